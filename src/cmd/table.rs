//! Columns aligned for a terminal, as every table of the toolkit prints
//! them: a header of single words in capitals (so `awk` and `cut` see one
//! field per column; `--no-header` leaves it out), two spaces between
//! columns, numbers right-aligned. Widths count characters, not bytes, so
//! `→` and `µ` do not skew them.

/// A table built row by row, rendered once all widths are known.
pub struct Table {
    header: Vec<String>,
    show_header: bool,
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column titles (printed in capitals), each one
    /// word: a title with a space would be two fields to `awk`.
    pub fn new(header: &[&str]) -> Table {
        debug_assert!(header.iter().all(|h| !h.contains(' ')), "{header:?}");
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            show_header: true,
            rows: Vec::new(),
            right: vec![false; header.len()],
        }
    }

    /// A table of these titles as `output` asks: without the header line
    /// under `--no-header`.
    pub fn for_output(header: &[&str], output: &super::Output) -> Table {
        let mut t = Table::new(header);
        t.show_header = !output.no_header;
        t
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
        let header = self.show_header.then_some(&self.header);
        for row in header.into_iter().chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in header.into_iter().chain(&self.rows) {
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

    #[test]
    fn no_header_leaves_out_only_the_titles() {
        let out = super::super::Output {
            no_header: true,
            ..Default::default()
        };
        let mut t = Table::for_output(&["name", "n"], &out);
        t.row(vec!["a".into(), "100".into()]);
        assert_eq!(t.render(), "a  100\n");
    }
}
