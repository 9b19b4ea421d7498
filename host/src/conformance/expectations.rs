//! Expectations files: the known failures and skips of one SDK.
//!
//! One line per case: `fail <case> <reason>` (the case is run and must fail; if it passes the
//! runner says so and fails, so the list stays honest) or `skip <case> <reason>` (not run).
//! `#` starts a comment.

use std::path::Path;

use anyhow::{Context, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone, Default)]
pub struct Expectations {
    entries: Vec<(String, Expectation)>,
}

impl Expectations {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read expectations file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.splitn(3, char::is_whitespace);
            let (kind, case) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let reason = words.next().unwrap_or("no reason given").trim().to_string();
            let expectation = match kind {
                "fail" => Expectation::Fail(reason),
                "skip" => Expectation::Skip(reason),
                _ => bail!(
                    "line {}: expected `fail <case> <reason>` or `skip <case> <reason>`",
                    n + 1
                ),
            };
            if case.is_empty() {
                bail!("line {}: missing case name", n + 1);
            }
            entries.push((case.to_string(), expectation));
        }
        Ok(Self { entries })
    }

    pub fn get(&self, case: &str) -> Option<&Expectation> {
        self.entries.iter().find(|(c, _)| c == case).map(|(_, e)| e)
    }

    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(c, _)| c.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let e =
            Expectations::parse("# known\nfail a-case  numbers differ\nskip other\n\n").unwrap();
        assert_eq!(
            e.get("a-case"),
            Some(&Expectation::Fail("numbers differ".into()))
        );
        assert!(matches!(e.get("other"), Some(Expectation::Skip(_))));
        assert!(Expectations::parse("maybe x").is_err());
    }
}
