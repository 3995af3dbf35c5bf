//! Tables as Docker prints them (its tabwriter: minimum width 10, padding 3): each column as wide
//! as its widest cell, so long cells ("Less than a second ago") never push the next column over.

/// Prints `header` and `rows`, each column padded to its widest cell; the last one unpadded.
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render(header, rows));
}

/// The NAME column of the live views (stats, top): as wide as the longest name (a generated one
/// is up to 20 characters), at least 16.
pub fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(|n| n.chars().count()).max().unwrap_or(0).max(16)
}

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let lines: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|col| {
            let widest = lines
                .iter()
                .map(|cells| cells.get(col).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0);
            (widest + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut text = String::new();
    for cells in lines {
        let mut line = String::new();
        for (col, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if col + 1 < cells.len() {
                let pad = widths[col].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three() {
        let rows = vec![
            vec!["a".into(), "Less than a second ago".into(), "x".into()],
            vec!["bbbbbbbbbbbb".into(), "2 hours ago".into(), "".into()],
        ];
        let text = render(&["ID", "CREATED", "LAST"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID             CREATED                  LAST");
        assert_eq!(lines[1], "a              Less than a second ago   x");
        assert_eq!(lines[2], "bbbbbbbbbbbb   2 hours ago");
    }

    #[test]
    fn a_table_without_rows_is_its_header() {
        assert_eq!(render(&["NAME", "SIZE"], &[]), "NAME      SIZE\n");
    }
}
