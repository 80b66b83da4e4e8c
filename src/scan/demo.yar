// The demo ruleset `mailsensor dev` runs when no --yara-rules folder is given: a few rules for
// what attackers send that the built-in checks do not catch. A starting point, not a product
// ruleset. Severity comes from `meta: severity` (malicious, suspicious or spam).
rule html_smuggling : smuggling
{
    meta:
        severity = "malicious"
        description = "HTML that assembles a file in the browser and hands it to the user"
    strings:
        $blob = "new Blob(" nocase
        $url = "createObjectURL" nocase
        $save = "msSaveOrOpenBlob" nocase
        $decode1 = "atob(" nocase
        $decode2 = "Uint8Array" nocase
        $download = ".download" nocase
    condition:
        (content_type == "text/html" or filename matches /\.s?html?$/i)
        and $blob and ($url or $save) and ($decode1 or $decode2) and ($download or $save)
}

rule pdf_openaction_javascript : pdf
{
    meta:
        severity = "malicious"
        description = "a PDF that runs JavaScript when it is opened"
    strings:
        $open = "/OpenAction"
        $aa = "/AA"
        $js1 = "/JavaScript"
        $js2 = "/JS"
    condition:
        uint32(0) == 0x46445025 and ($open or $aa) and ($js1 or $js2)
}

rule login_link_to_a_lookalike_domain : phishing
{
    meta:
        severity = "suspicious"
        description = "a message about an account that links to a sign-in page on a look-alike domain"
    strings:
        $account = /(verify|confirm|suspend(ed)?|unlock)\s+your\s+(account|identity|password)/ nocase
        $link = /https?:\/\/[a-z0-9.-]*(paypa1|micros0ft|rnicrosoft|app1e|g00gle|0ffice365)[a-z0-9.-]*\/[^\s"'<>]*(login|signin|sign-in|verify)/ nocase
    condition:
        $account and $link
}
