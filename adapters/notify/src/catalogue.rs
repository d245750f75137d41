//! The mail texts, per language: a subject and a plain-text body naming the
//! rule, severity, device, point, value and time of the transition.

use hearth_domain::model::{AlarmNotice, AlarmTransition, Language, Severity};

/// A mail ready to send, in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub body: String,
}

struct Words {
    raised: &'static str,
    cleared: &'static str,
    acknowledged: &'static str,
    on: &'static str,
    rule: &'static str,
    severity: &'static str,
    device: &'static str,
    point: &'static str,
    value: &'static str,
    time: &'static str,
    message: &'static str,
    none: &'static str,
    footer: &'static str,
    severities: [&'static str; 4],
    decimal_comma: bool,
}

const EN: Words = Words {
    raised: "Alarm raised",
    cleared: "Alarm cleared",
    acknowledged: "Alarm acknowledged",
    on: "on",
    rule: "Rule",
    severity: "Severity",
    device: "Device",
    point: "Point",
    value: "Value",
    time: "Time",
    message: "Message",
    none: "none",
    footer: "Sent by Hearth. You receive this because you are a recipient of this alarm rule.",
    severities: ["Critical", "Major", "Minor", "Warning"],
    decimal_comma: false,
};

const DE: Words = Words {
    raised: "Alarm ausgelöst",
    cleared: "Alarm aufgehoben",
    acknowledged: "Alarm quittiert",
    on: "an",
    rule: "Regel",
    severity: "Schweregrad",
    device: "Gerät",
    point: "Datenpunkt",
    value: "Wert",
    time: "Zeit",
    message: "Meldung",
    none: "keiner",
    footer: "Gesendet von Hearth. Sie erhalten diese Nachricht als Empfänger dieser Alarmregel.",
    severities: ["Kritisch", "Hoch", "Niedrig", "Warnung"],
    decimal_comma: true,
};

const DA: Words = Words {
    raised: "Alarm udløst",
    cleared: "Alarm ophørt",
    acknowledged: "Alarm kvitteret",
    on: "på",
    rule: "Regel",
    severity: "Alvorlighed",
    device: "Enhed",
    point: "Datapunkt",
    value: "Værdi",
    time: "Tidspunkt",
    message: "Besked",
    none: "ingen",
    footer: "Sendt af Hearth. Du modtager denne besked som modtager af denne alarmregel.",
    severities: ["Kritisk", "Alvorlig", "Mindre", "Advarsel"],
    decimal_comma: true,
};

fn words(language: Language) -> &'static Words {
    match language {
        Language::En => &EN,
        Language::De => &DE,
        Language::Da => &DA,
    }
}

fn severity_name(w: &Words, severity: Severity) -> &'static str {
    let i = match severity {
        Severity::Critical => 0,
        Severity::Major => 1,
        Severity::Minor => 2,
        Severity::Warning => 3,
    };
    w.severities[i]
}

/// Names and messages come from rule and device names users typed: keep
/// them on one line so they cannot forge headers or body lines.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn number(w: &Words, value: f64) -> String {
    let text = format!("{value}");
    if w.decimal_comma {
        text.replace('.', ",")
    } else {
        text
    }
}

/// The mail about `notice` in `language`.
pub fn render(notice: &AlarmNotice, language: Language) -> RenderedMail {
    let w = words(language);
    let what = match notice.transition {
        AlarmTransition::Raised => w.raised,
        AlarmTransition::Cleared => w.cleared,
        AlarmTransition::Acknowledged => w.acknowledged,
    };
    let severity = severity_name(w, notice.severity);
    let rule = one_line(&notice.rule_name);
    let device = one_line(&notice.device_name);
    let subject = format!("[Hearth] {what} ({severity}): {rule} {} {device}", w.on);
    let point = notice
        .point
        .as_ref()
        .map_or_else(|| w.none.to_owned(), |p| one_line(p.as_str()));
    let value = notice
        .value
        .map_or_else(|| w.none.to_owned(), |v| number(w, v));
    let time = notice.at.format("%Y-%m-%d %H:%M:%S UTC");
    let body = format!(
        "{what}\n\n{}: {rule}\n{}: {severity}\n{}: {device}\n{}: {point}\n{}: {value}\n{}: {time}\n{}: {}\n\n-- \n{}\n",
        w.rule,
        w.severity,
        w.device,
        w.point,
        w.value,
        w.time,
        w.message,
        one_line(&notice.message),
        w.footer,
    );
    RenderedMail { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use hearth_domain::ids::{AlarmId, AlarmRuleId, DeviceId, PointKey, TenantId};

    fn notice() -> AlarmNotice {
        AlarmNotice {
            tenant_id: TenantId::new(),
            alarm_id: AlarmId::new(),
            rule_id: AlarmRuleId::new(),
            rule_name: "Flow too hot\r\nBcc: x@evil.test".into(),
            severity: Severity::Major,
            device_id: DeviceId::new(),
            device_name: "Substation 7".into(),
            point: PointKey::new("flow_temp").ok(),
            transition: AlarmTransition::Raised,
            at: Utc
                .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
                .single()
                .unwrap_or_default(),
            value: Some(91.5),
            message: "flow_temp above 90".into(),
        }
    }

    #[test]
    fn every_language_names_the_rule_device_point_value_and_time() {
        for (lang, raised, value) in [
            (Language::En, "Alarm raised (Major)", "91.5"),
            (Language::De, "Alarm ausgelöst (Hoch)", "91,5"),
            (Language::Da, "Alarm udløst (Alvorlig)", "91,5"),
        ] {
            let mail = render(&notice(), lang);
            assert!(mail.subject.contains(raised), "{lang:?}: {}", mail.subject);
            assert!(mail.subject.contains("Substation 7"));
            assert!(!mail.subject.contains('\n'), "no header injection");
            assert!(mail.body.contains("flow_temp"));
            assert!(mail.body.contains(value), "{lang:?}: {}", mail.body);
            assert!(mail.body.contains("2026-01-02 03:04:05 UTC"));
        }
    }

    #[test]
    fn clears_say_so() {
        let mut n = notice();
        n.transition = AlarmTransition::Cleared;
        n.value = None;
        assert!(render(&n, Language::Da).subject.contains("Alarm ophørt"));
        assert!(render(&n, Language::De).body.contains("Wert: keiner"));
    }
}
