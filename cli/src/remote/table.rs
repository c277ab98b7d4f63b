//! A plain text table: a header, a rule, and columns as wide as their widest cell.

use serde_json::Value;

pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (at, cell) in row.iter().enumerate().take(columns) {
                widths[at] = widths[at].max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let padded: Vec<String> = cells
                .enumerate()
                .map(|(at, cell)| format!("{cell:<width$}", width = widths[at]))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = line(&mut self.header.iter().copied());
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&mut rule.iter().map(String::as_str)));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
            out.push('\n');
        }
        out
    }
}

/// A field as table text: strings bare, numbers as written, absent as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["prd_1".into(), "Tote".into()]);
        table.row(vec!["prd_10".into(), "Hoodie, heavy".into()]);
        assert_eq!(
            table.render(),
            "ID      NAME\n------  -------------\nprd_1   Tote\nprd_10  Hoodie, heavy\n"
        );
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!(12)), "12");
        assert_eq!(cell(&serde_json::json!("on_sale")), "on_sale");
    }
}
