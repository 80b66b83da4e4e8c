use super::{ClientRules, DomainRules, SizeLimit, SizeLimitDraft, Violation};

/// One sensor's SMTP integration settings, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmtpSettings {
    pub enabled: bool,
    pub destination_domains: DomainRules,
    pub clients: ClientRules,
    pub message_size_limit: SizeLimit,
}

/// The settings document as the API received it, before any rule was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsDraft {
    pub enabled: bool,
    pub destination_domains: Vec<String>,
    pub clients: Vec<String>,
    pub message_size_limit: SizeLimitDraft,
}

impl SmtpSettings {
    /// Parses all three parts and reports every violation of every field at once, so one
    /// 422 tells the administrator everything to fix.
    pub fn parse(draft: &SettingsDraft, platform_cap: u64) -> Result<SmtpSettings, Vec<Violation>> {
        let domains = DomainRules::parse(&draft.destination_domains);
        let clients = ClientRules::parse(&draft.clients);
        let size = draft.message_size_limit.parse(platform_cap);
        match (domains, clients, size) {
            (Ok(destination_domains), Ok(clients), Ok(message_size_limit)) => {
                Ok(SmtpSettings { enabled: draft.enabled, destination_domains, clients, message_size_limit })
            }
            (domains, clients, size) => {
                Err([domains.err(), clients.err(), size.err()].into_iter().flatten().flatten().collect())
            }
        }
    }

    /// Whether the blank-field rule "only clients in the worker's own subnet" decides who may
    /// connect: enabled, no positive client entry and no destination domains.
    pub fn only_sensor_subnet(&self) -> bool {
        self.enabled && !self.clients.has_positive_entry() && self.destination_domains.is_empty()
    }

    /// The derived, read-only `max_message_bytes` of the API document.
    pub fn max_message_bytes(&self, platform_cap: u64) -> u64 {
        self.message_size_limit.max_bytes(platform_cap)
    }

    /// The normalised settings in API form; parsing it again under the same platform cap
    /// gives the same settings.
    pub fn to_draft(&self) -> SettingsDraft {
        SettingsDraft {
            enabled: self.enabled,
            destination_domains: self.destination_domains.entries().to_vec(),
            clients: self.clients.entries().to_vec(),
            message_size_limit: self.message_size_limit.to_draft(),
        }
    }
}
