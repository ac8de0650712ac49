//! MQTT topic templates such as `wedge/{device}/{module}/{output}`.

/// The placeholders a telemetry topic may use.
const TELEMETRY_PLACEHOLDERS: &[&str] = &["device", "module", "output"];
/// The placeholders a device-wide topic (config, reported) may use.
const DEVICE_PLACEHOLDERS: &[&str] = &["device"];

/// A checked topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    template: String,
}

/// A template or a value that cannot make a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is malformed.
    #[error("topic template `{template}`: {reason}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value would change the topic's structure.
    #[error(
        "{name} `{value}` cannot be part of a topic: it is empty or holds `/`, `+`, `#` or NUL"
    )]
    Value {
        /// Which placeholder.
        name: &'static str,
        /// The value.
        value: String,
    },
}

impl TopicTemplate {
    /// A telemetry topic: `{device}`, `{module}` and `{output}` may be used.
    ///
    /// # Errors
    /// [`TemplateError::Template`] naming the problem.
    pub fn telemetry(template: &str) -> Result<TopicTemplate, TemplateError> {
        Self::parse(template, TELEMETRY_PLACEHOLDERS)
    }

    /// A device-wide topic: only `{device}` may be used.
    ///
    /// # Errors
    /// [`TemplateError::Template`] naming the problem.
    pub fn device(template: &str) -> Result<TopicTemplate, TemplateError> {
        Self::parse(template, DEVICE_PLACEHOLDERS)
    }

    /// Checks `template`: braces balanced, only `placeholders`, no MQTT wildcards, not
    /// starting with `$` (reserved for broker topics).
    fn parse(template: &str, placeholders: &[&str]) -> Result<TopicTemplate, TemplateError> {
        let error = |reason: String| TemplateError::Template {
            template: template.to_string(),
            reason,
        };
        if template.is_empty() {
            return Err(error("is empty".into()));
        }
        if template.starts_with('$') {
            return Err(error("topics starting with `$` are reserved".into()));
        }
        if template.contains(['+', '#', '\0']) {
            return Err(error("must not contain `+`, `#` or NUL".into()));
        }
        let mut rest = template;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(error("`}` without `{`".into()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(error("`{` without `}`".into()));
            };
            let name = &rest[open + 1..open + close];
            if !placeholders.contains(&name) {
                let known: Vec<String> = placeholders.iter().map(|p| format!("{{{p}}}")).collect();
                return Err(error(format!(
                    "unknown placeholder `{{{name}}}`; this topic may use {}",
                    known.join(", ")
                )));
            }
            rest = &rest[open + close + 1..];
        }
        Ok(TopicTemplate {
            template: template.to_string(),
        })
    }

    /// The topic for one message.
    ///
    /// # Errors
    /// [`TemplateError::Value`] when a value is empty or holds `/`, `+`, `#` or NUL: one level
    /// of the topic per placeholder, so that subscribers' filters mean what they say.
    pub fn render(
        &self,
        device: &str,
        module: &str,
        output: &str,
    ) -> Result<String, TemplateError> {
        let mut topic = self.template.clone();
        for (name, value) in [("device", device), ("module", module), ("output", output)] {
            let placeholder = format!("{{{name}}}");
            if !topic.contains(&placeholder) {
                continue;
            }
            if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
                return Err(TemplateError::Value {
                    name,
                    value: value.to_string(),
                });
            }
            topic = topic.replace(&placeholder, value);
        }
        Ok(topic)
    }
}

impl std::fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_placeholder() {
        let template = TopicTemplate::telemetry("wedge/{device}/{module}/{output}").unwrap();
        assert_eq!(
            template.render("dev1", "filter", "alerts").unwrap(),
            "wedge/dev1/filter/alerts"
        );
        let fixed = TopicTemplate::telemetry("plant/line-3/telemetry").unwrap();
        assert_eq!(
            fixed.render("d", "m", "o/x").unwrap(),
            "plant/line-3/telemetry"
        );
    }

    #[test]
    fn malformed_templates_are_refused_with_the_reason() {
        for (template, reason) in [
            ("", "is empty"),
            ("$SYS/x", "reserved"),
            ("wedge/+/x", "`+`"),
            ("wedge/{device", "without `}`"),
            ("wedge/device}", "without `{`"),
            ("wedge/{host}", "unknown placeholder `{host}`"),
        ] {
            let error = TopicTemplate::telemetry(template).unwrap_err().to_string();
            assert!(error.contains(reason), "{template}: {error}");
        }
        let error = TopicTemplate::device("wedge/{device}/{module}").unwrap_err();
        assert!(error.to_string().contains("may use {device}"), "{error}");
    }

    #[test]
    fn values_cannot_add_levels_or_wildcards() {
        let template = TopicTemplate::telemetry("wedge/{device}/{module}/{output}").unwrap();
        for bad in ["a/b", "+", "#", ""] {
            assert!(matches!(
                template.render("dev1", "m", bad),
                Err(TemplateError::Value { name: "output", .. })
            ));
        }
    }
}
