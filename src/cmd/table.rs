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
    /// Widths of rows measured but not kept ([`Table::measure`]).
    measured: Vec<usize>,
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
            measured: vec![0; header.len()],
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

    /// Widens the columns to fit `cells` without keeping the row: a table
    /// too long to hold is measured row by row, then printed row by row
    /// with [`Table::header_line`] and [`Table::line`], as [`Table::render`]
    /// would print it.
    pub fn measure(&mut self, cells: &[String]) {
        for (w, cell) in self.measured.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }

    fn widths(&self) -> Vec<usize> {
        let mut width = self.measured.clone();
        let header = self.show_header.then_some(&self.header);
        for row in header.into_iter().chain(&self.rows) {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        width
    }

    fn line_in(&self, width: &[usize], row: &[String], out: &mut String) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(width.len()) {
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

    /// The header line as [`Table::render`] prints it; empty without one.
    pub fn header_line(&self) -> String {
        let mut out = String::new();
        if self.show_header {
            self.line_in(&self.widths(), &self.header, &mut out);
        }
        out
    }

    /// One row as [`Table::render`] prints it, in the columns measured so
    /// far; the row must have been measured.
    pub fn line(&self, cells: &[String]) -> String {
        let mut out = String::new();
        self.line_in(&self.widths(), cells, &mut out);
        out
    }

    /// The table as lines, each ending in a newline; trailing spaces trimmed.
    pub fn render(&self) -> String {
        let width = self.widths();
        let header = self.show_header.then_some(&self.header);
        let mut out = String::new();
        for row in header.into_iter().chain(&self.rows) {
            self.line_in(&width, row, &mut out);
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

    #[test]
    fn measured_rows_print_as_the_whole_table_renders() {
        let rows: Vec<Vec<String>> = [["a", "100"], ["long→name", "2"], ["b", "33333"]]
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        for no_header in [false, true] {
            let out = super::super::Output {
                no_header,
                ..Default::default()
            };
            let mut whole = Table::for_output(&["name", "n"], &out);
            let mut streamed = Table::for_output(&["name", "n"], &out);
            whole.right(1);
            streamed.right(1);
            for r in &rows {
                whole.row(r.clone());
                streamed.measure(r);
            }
            let mut text = streamed.header_line();
            for r in &rows {
                text.push_str(&streamed.line(r));
            }
            assert_eq!(text, whole.render());
        }
    }
}
