//! Columns aligned for a terminal, as the review commands print them: a
//! header in capitals, two spaces between columns, numbers right-aligned.
//! Widths count characters, not bytes, so `→` and `µ` do not skew them.

/// A table built row by row, rendered once all widths are known.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles (printed in capitals).
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// Right-aligns column `col` and every column after it.
    pub fn right_from(&mut self, col: usize) {
        for r in self.right.iter_mut().skip(col) {
            *r = true;
        }
    }

    /// Right-aligns only column `col`.
    pub fn right(&mut self, col: usize) {
        if let Some(r) = self.right.get_mut(col) {
            *r = true;
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in a newline; trailing spaces trimmed.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - cell.chars().count();
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1 malformed line skipped`, `3 malformed lines skipped`.
pub fn malformed_note(n: u64) -> String {
    format!(
        "{n} malformed line{} skipped",
        if n == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["name", "n"]);
        t.right(1);
        t.row(vec!["a".into(), "100".into()]);
        t.row(vec!["long→name".into(), "2".into()]);
        assert_eq!(
            t.render(),
            "NAME         N\na          100\nlong→name    2\n"
        );
    }
}
