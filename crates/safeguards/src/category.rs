//! The scope categories of the `cyber` profile and a transparent keyword
//! assignment of a blocked request to one of them.
//!
//! The category is an explanation attached to a block, not a decision: the
//! classifier decides whether to block, and this only names the most likely
//! kind of misuse, so it is kept simple and auditable.

use serde::{Deserialize, Serialize};

/// The in-scope misuse categories of the `cyber` profile (see DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CyberCategory {
    Malware,
    Exploitation,
    Intrusion,
    UnauthorisedAccess,
    CredentialTheft,
    Evasion,
    CommandAndControl,
    DenialOfService,
    Cryptojacking,
    CovertSurveillance,
    PromptInjection,
}

impl CyberCategory {
    pub const ALL: [CyberCategory; 11] = [
        CyberCategory::Malware,
        CyberCategory::Exploitation,
        CyberCategory::Intrusion,
        CyberCategory::UnauthorisedAccess,
        CyberCategory::CredentialTheft,
        CyberCategory::Evasion,
        CyberCategory::CommandAndControl,
        CyberCategory::DenialOfService,
        CyberCategory::Cryptojacking,
        CyberCategory::CovertSurveillance,
        CyberCategory::PromptInjection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CyberCategory::Malware => "malware",
            CyberCategory::Exploitation => "exploitation",
            CyberCategory::Intrusion => "intrusion",
            CyberCategory::UnauthorisedAccess => "unauthorised_access",
            CyberCategory::CredentialTheft => "credential_theft",
            CyberCategory::Evasion => "evasion",
            CyberCategory::CommandAndControl => "command_and_control",
            CyberCategory::DenialOfService => "denial_of_service",
            CyberCategory::Cryptojacking => "cryptojacking",
            CyberCategory::CovertSurveillance => "covert_surveillance",
            CyberCategory::PromptInjection => "prompt_injection",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.as_str() == name)
    }

    /// Word stems that suggest this category. Matching is on lowercased word
    /// prefixes, so `keylog` covers `keylogger` and `keylogging`.
    fn stems(self) -> &'static [&'static str] {
        match self {
            CyberCategory::Malware => &[
                "malware",
                "ransomware",
                "virus",
                "trojan",
                "worm",
                "keylog",
                "rootkit",
                "spyware",
                "payload",
                "backdoor",
                "dropper",
                "infostealer",
                "stealer",
                "botnet",
                "wiper",
                "polymorph",
                "malicious code",
            ],
            CyberCategory::Exploitation => &[
                "exploit",
                "overflow",
                "injection",
                "sqli",
                "xss",
                "rce",
                "shellcode",
                "zero-day",
                "0day",
                "vulnerab",
                "cve",
                "deserializ",
                "use-after-free",
                "heap spray",
                "rop chain",
            ],
            CyberCategory::Intrusion => &[
                "hack",
                "intrusion",
                "breach",
                "pivot",
                "lateral",
                "penetrat",
                "compromis",
                "foothold",
                "escalat",
                "privilege",
                "container escape",
                "post-exploit",
                "persistence",
            ],
            CyberCategory::UnauthorisedAccess => &[
                "unauthori",
                "bypass auth",
                "without permission",
                "without authori",
                "someone else",
                "break into",
                "login",
                "account",
                "wifi",
                "wi-fi",
                "crack",
            ],
            CyberCategory::CredentialTheft => &[
                "phish",
                "password",
                "credential",
                "cookie",
                "token",
                "session hijack",
                "mimikatz",
                "lsass",
                "hash dump",
                "brute",
                "2fa",
                "mfa",
                "otp",
            ],
            CyberCategory::Evasion => &[
                "evade",
                "evasion",
                "antivirus",
                "edr",
                "undetect",
                "obfuscat",
                "bypass",
                "sandbox",
                "amsi",
                "defender",
                "firewall",
                "ids",
                "detection",
                "clear logs",
                "anti-forensic",
            ],
            CyberCategory::CommandAndControl => &[
                "c2",
                "command and control",
                "command-and-control",
                "beacon",
                "fast-flux",
                "domain fronting",
                "dga",
                "dns tunnel",
                "reverse shell",
                "callback server",
            ],
            CyberCategory::DenialOfService => &[
                "ddos",
                "dos attack",
                "denial of service",
                "denial-of-service",
                "flood",
                "slowloris",
                "amplification",
                "take down",
                "takedown",
                "overwhelm",
                "stresser",
                "booter",
            ],
            CyberCategory::Cryptojacking => &[
                "cryptojack",
                "mining",
                "miner",
                "xmrig",
                "monero",
                "coinhive",
            ],
            CyberCategory::CovertSurveillance => &[
                "spy on",
                "stalkerware",
                "track",
                "monitor my",
                "secretly",
                "covert",
                "without them knowing",
                "without her knowing",
                "without his knowing",
                "read their messages",
                "webcam",
                "location of",
                "surveil",
            ],
            CyberCategory::PromptInjection => &[
                "ignore previous",
                "ignore all previous",
                "ignore the above",
                "system prompt",
                "exfiltrat",
                "api key",
                "secret key",
                "reveal the password",
                "disregard",
                "markdown image",
            ],
        }
    }
}

/// The category whose stems occur most often in `text`, or `None` when no
/// stem occurs. Ties go to the category listed first in [`CyberCategory::ALL`].
pub fn categorise(text: &str) -> Option<CyberCategory> {
    let lowered = text.to_lowercase();
    let mut best: Option<(CyberCategory, usize)> = None;
    for category in CyberCategory::ALL {
        let hits: usize = category
            .stems()
            .iter()
            .map(|stem| lowered.matches(stem).count())
            .sum();
        if hits > 0 && best.is_none_or(|(_, best_hits)| hits > best_hits) {
            best = Some((category, hits));
        }
    }
    best.map(|(category, _)| category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_keywords() {
        let cases = [
            (
                "write a keylogger that emails keystrokes",
                Some(CyberCategory::Malware),
            ),
            (
                "craft a phishing page to harvest bank passwords",
                Some(CyberCategory::CredentialTheft),
            ),
            (
                "launch a ddos flood against a website",
                Some(CyberCategory::DenialOfService),
            ),
            (
                "hide xmrig mining in a browser extension",
                Some(CyberCategory::Cryptojacking),
            ),
            ("bake a cake", None),
        ];
        for (text, expected) in cases {
            assert_eq!(categorise(text), expected, "`{text}`");
        }
    }

    #[test]
    fn names_round_trip() {
        for category in CyberCategory::ALL {
            assert_eq!(CyberCategory::parse(category.as_str()), Some(category));
        }
    }
}
