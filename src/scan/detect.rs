//! Content checks on byte strings and file names; no MIME knowledge here.

/// The standard 68-byte EICAR anti-virus test string.
pub(crate) const EICAR: &[u8; 68] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// Boyer-Moore-Horspool shift table for [`EICAR`].
static EICAR_SHIFT: [u8; 256] = shift_table(EICAR);

const fn shift_table(pattern: &[u8; 68]) -> [u8; 256] {
    let mut table = [pattern.len() as u8; 256];
    let mut i = 0;
    while i + 1 < pattern.len() {
        table[pattern[i] as usize] = (pattern.len() - 1 - i) as u8;
        i += 1;
    }
    table
}

/// Whether `haystack` contains the EICAR test string anywhere.
///
/// Horspool search: about `len / 68` steps on typical data, never more than `68 * len`
/// byte comparisons.
pub(crate) fn contains_eicar(haystack: &[u8]) -> bool {
    let m = EICAR.len();
    let last = EICAR[m - 1];
    let mut start = 0;
    while let Some(window) = haystack.get(start..start + m) {
        let tail = window[m - 1];
        if tail == last && window == EICAR {
            return true;
        }
        start += usize::from(EICAR_SHIFT[usize::from(tail)]);
    }
    false
}

/// What kind of executable `content` starts like, if any.
pub(crate) fn executable_kind(content: &[u8]) -> Option<&'static str> {
    match content {
        [b'M', b'Z', ..] if content.len() >= 64 => {
            let pe_offset = u32::from_le_bytes([content[0x3c], content[0x3d], content[0x3e], content[0x3f]]);
            let pe_at = usize::try_from(pe_offset).ok();
            let is_pe = pe_at.and_then(|at| content.get(at..at.checked_add(4)?)) == Some(b"PE\0\0");
            Some(if is_pe { "Windows PE executable" } else { "DOS/Windows MZ executable" })
        }
        [0x7f, b'E', b'L', b'F', ..] => Some("ELF executable"),
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..] | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..] => Some("Mach-O executable"),
        [0xca, 0xfe, 0xba, 0xbe, ..] => Some("Mach-O universal or Java class"),
        [0xca, 0xfe, 0xba, 0xbf, ..] => Some("Mach-O universal (64-bit)"),
        [b'#', b'!', ..] => Some("script with a #! interpreter line"),
        _ => None,
    }
}

/// Extensions that run code, or open something that does, when double-clicked.
const RISKY_EXTENSIONS: &[&str] = &[
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "ps1", "msi", "jar",
    "lnk", "iso", "img", "dll", "cpl", "reg", "docm", "xlsm", "pptm",
];

/// A risky extension found on a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RiskyName {
    /// The risky extension, lowercase, without the dot.
    pub extension: String,
    /// The extension before it when it looks like a decoy, e.g. `pdf` in `invoice.pdf.exe`.
    pub decoy: Option<String>,
}

/// Whether the last extension of `name` is risky.
///
/// Case-insensitive. Directory parts are ignored, and so are trailing dots, spaces, control
/// and invisible formatting characters, which Windows or the eye drop (`evil.exe.` runs as
/// `evil.exe`).
pub(crate) fn risky_extension(name: &str) -> Option<RiskyName> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base.trim_end_matches(|c: char| c == '.' || c.is_whitespace() || c.is_control() || is_invisible(c));
    let (stem, extension) = base.rsplit_once('.')?;
    let extension = extension.to_ascii_lowercase();
    if !RISKY_EXTENSIONS.contains(&extension.as_str()) {
        return None;
    }
    let decoy = stem
        .rsplit_once('.')
        .map(|(_, decoy)| decoy.trim())
        .filter(|decoy| (1..=5).contains(&decoy.len()) && decoy.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_ascii_lowercase);
    Some(RiskyName { extension, decoy })
}

/// Zero-width and bidirectional formatting characters that hide the real end of a name.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}
