//! `poc top [CONTAINER...]`: a full-screen view of running containers: a stats table, and for the
//! selected one sparkline histories of CPU, memory, page faults, throttling, pids and pressure.
//! Keys: up/down (or k/j) select, q / Esc / Ctrl-C quit. Reads cgroup files only. The terminal is
//! given back on every way out: a key, an error, SIGTERM, SIGHUP, SIGINT or a panic.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::prelude::CrosstermBackend;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Sparkline, Table};
use ratatui::{DefaultTerminal, Frame, Terminal};

use super::stats::{choose, host_memory_bytes, Row};
use crate::config::Paths;
use crate::container::state::{Observed, State};
use crate::container::{usage, Usage};
use crate::units::human_size;

#[derive(clap::Args)]
pub struct Args {
    /// Time between samples.
    #[arg(long, value_parser = crate::units::parse_duration, default_value = "1s")]
    interval: Duration,
    /// Containers to watch (default: every running one, including those started later).
    containers: Vec<String>,
}

/// Samples kept per container: more than a wide terminal shows.
const HISTORY: usize = 512;

struct Watched {
    state: State,
    before: Usage,
    rows: VecDeque<Row>,
    exited: bool,
}

/// The smallest terminal the view fits: the table's header and one row, four rows of charts with
/// their borders, the help line; and a name, a number and a bar side by side.
const MIN_COLS: u16 = 40;
const MIN_ROWS: u16 = 17;

/// Longest wait for a key before looking for a signal that asked poc top to end.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    if !nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        return Err(anyhow::anyhow!(
            "poc top needs a terminal; for numbers in a pipe use poc stats --format json"
        )
        .into());
    }
    if args.interval < Duration::from_millis(50) {
        return Err(anyhow::anyhow!("--interval: at least 50ms").into());
    }
    let (cols, rows) = terminal::size().map_err(|e| anyhow::anyhow!("terminal: {e}"))?;
    if cols < MIN_COLS || rows < MIN_ROWS {
        return Err(anyhow::anyhow!(
            "poc top needs a terminal of at least {MIN_COLS}x{MIN_ROWS}; this one is {cols}x{rows}"
        )
        .into());
    }
    let mut watched: Vec<Watched> = Vec::new();
    refresh(paths, &args.containers, &mut watched)?;
    let mut terminal = enter_terminal().map_err(|e| anyhow::anyhow!("terminal: {e}"))?;
    let result = show(&mut terminal, paths, &args, &mut watched);
    drop(terminal);
    leave_terminal();
    match result.map_err(|e| anyhow::anyhow!("terminal: {e}"))? {
        Some(signal) => Ok(128 + signal),
        None => Ok(0),
    }
}

/// The signal that asked poc top to end (SIGTERM, SIGHUP, SIGINT), 0 before one came: the loop
/// sees it within [`SIGNAL_CHECK`] and leaves through the same door as `q`.
static ENDED_BY: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    ENDED_BY.store(signal, Ordering::Relaxed);
}

/// Raw mode, the alternate screen and a hidden cursor, with every way out giving the terminal
/// back: `q`, an error, SIGTERM/SIGHUP/SIGINT (noted, then the loop ends) and a panic (a hook).
fn enter_terminal() -> std::io::Result<DefaultTerminal> {
    let handler = SigAction::new(
        SigHandler::Handler(note_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &handler) }.map_err(std::io::Error::from)?;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave_terminal();
        previous(info);
    }));
    terminal::enable_raw_mode()?;
    let entered = execute!(std::io::stdout(), EnterAlternateScreen)
        .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
    if entered.is_err() {
        leave_terminal();
    }
    entered
}

/// The terminal as poc top found it: cooked mode, the main screen, a visible cursor (ratatui's own
/// restore leaves the cursor hidden). Errors are ignored: a terminal that hung up needs nothing.
fn leave_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
}

/// Draws, samples and reads keys until `q`, Esc or Ctrl-C (None) or a signal (Some of it).
fn show(
    terminal: &mut DefaultTerminal,
    paths: &Paths,
    args: &Args,
    watched: &mut Vec<Watched>,
) -> std::io::Result<Option<i32>> {
    let host_memory = host_memory_bytes();
    let mut selected = 0usize;
    let mut next = Instant::now() + args.interval;
    loop {
        match ENDED_BY.load(Ordering::Relaxed) {
            0 => {}
            signal => return Ok(Some(signal)),
        }
        terminal.draw(|f| draw(f, watched, selected, args.interval))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait.min(SIGNAL_CHECK))? {
            match event::read()? {
                Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(None),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(None)
                    }
                    KeyCode::Up | KeyCode::Char('k') => selected = selected.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => {
                        selected = (selected + 1).min(watched.len().saturating_sub(1))
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if Instant::now() >= next {
            next += args.interval;
            sample(watched, host_memory);
            if args.containers.is_empty() {
                let _ = refresh(paths, &args.containers, watched);
            }
        }
    }
}

/// One new row for every watched container still running; the others are marked exited.
fn sample(watched: &mut [Watched], host_memory: u64) {
    for w in watched.iter_mut().filter(|w| !w.exited) {
        if w.state.observed() != Observed::Running {
            w.exited = true;
            continue;
        }
        let after = usage(&w.state);
        let row = Row::new(&w.state, &w.before, &after, host_memory);
        w.before = after;
        if w.rows.len() == HISTORY {
            w.rows.pop_front();
        }
        w.rows.push_back(row);
    }
}

/// Adds containers that are running now and not watched yet.
fn refresh(
    paths: &Paths,
    queries: &[String],
    watched: &mut Vec<Watched>,
) -> Result<(), super::Exit> {
    let known: HashSet<String> = watched.iter().map(|w| w.state.id.to_string()).collect();
    for st in choose(paths, queries)? {
        if !known.contains(st.id.as_str()) {
            watched.push(Watched {
                before: usage(&st),
                state: st,
                rows: VecDeque::new(),
                exited: false,
            });
        }
    }
    // Oldest first, as `poc ps` lists them.
    watched.sort_by(|a, b| (a.state.created, &a.state.id).cmp(&(b.state.created, &b.state.id)));
    Ok(())
}

fn draw(f: &mut Frame, watched: &[Watched], selected: usize, interval: Duration) {
    let area = f.area();
    if area.width < MIN_COLS || area.height < MIN_ROWS {
        let text = format!(
            "terminal too small: {}x{}, poc top needs {MIN_COLS}x{MIN_ROWS}",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(text), area);
        return;
    }
    let table_height = (watched.len() as u16 + 3).clamp(4, 12);
    let [table_area, charts_area, help_area] = Layout::vertical([
        Constraint::Length(table_height),
        Constraint::Min(8),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(table(watched, selected), table_area);
    match watched.get(selected) {
        Some(w) => charts(f, w, charts_area),
        None => f.render_widget(
            Paragraph::new("no running containers").block(Block::bordered()),
            charts_area,
        ),
    }
    f.render_widget(
        Paragraph::new(format!(" up/down: select   q: quit   every {interval:?}"))
            .style(Style::default().add_modifier(Modifier::DIM)),
        help_area,
    );
}

fn name(w: &Watched) -> String {
    w.state
        .name
        .clone()
        .unwrap_or_else(|| w.state.id.short().to_string())
}

fn table(watched: &[Watched], selected: usize) -> Table<'static> {
    let header = TableRow::new(
        [
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "PIDS",
            "THROTTLED",
            "STATUS",
        ]
        .map(|h| Cell::from(h).style(Style::default().add_modifier(Modifier::BOLD))),
    );
    let rows: Vec<TableRow> = watched
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let cells = match w.rows.back() {
                Some(r) => [
                    name(w),
                    format!("{:.2}%", r.cpu_percent),
                    format!(
                        "{} / {}",
                        human_size(r.memory_bytes),
                        human_size(r.memory_limit)
                    ),
                    format!("{:.2}%", r.memory_percent),
                    r.pids.to_string(),
                    format!("{} / {:.2}s", r.throttled_periods, r.throttled_seconds),
                    if w.exited { "exited" } else { "running" }.to_string(),
                ],
                None => [
                    name(w),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    if w.exited { "exited" } else { "starting" }.to_string(),
                ],
            };
            let style = if i == selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            TableRow::new(cells).style(style)
        })
        .collect();
    let names: Vec<String> = watched.iter().map(name).collect();
    // At most 40: the other columns keep their room on a terminal of usual width.
    let name_width = super::table::name_width(names.iter().map(String::as_str)).min(40) as u16;
    Table::new(
        rows,
        [
            Constraint::Length(name_width),
            Constraint::Length(8),
            Constraint::Length(22),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(16),
            Constraint::Length(8),
        ],
    )
    .header(header)
    .block(Block::bordered().title(" poc top "))
}

/// One sparkline per measure: its title, its value in a row (None where the kernel keeps none),
/// and how a value reads.
type Measure = (&'static str, fn(&Row) -> Option<f64>, fn(f64) -> String);

const MEASURES: [Measure; 8] = [
    ("CPU", |r| Some(r.cpu_percent), |v| format!("{v:.1}%")),
    (
        "Memory",
        |r| Some(r.memory_bytes as f64),
        |v| human_size(v as u64),
    ),
    (
        "Page faults",
        |r| Some(r.page_faults_per_second),
        |v| format!("{v:.0}/s"),
    ),
    (
        "Throttled",
        |r| Some(r.throttled_ms_per_second),
        |v| format!("{v:.0} ms/s"),
    ),
    ("Processes", |r| Some(r.pids as f64), |v| format!("{v:.0}")),
    (
        "CPU pressure",
        |r| r.psi.map(|p| p.cpu),
        |v| format!("{v:.2}%"),
    ),
    (
        "Memory pressure",
        |r| r.psi.map(|p| p.memory),
        |v| format!("{v:.2}%"),
    ),
    (
        "I/O pressure",
        |r| r.psi.map(|p| p.io),
        |v| format!("{v:.2}%"),
    ),
];

fn charts(f: &mut Frame, w: &Watched, area: Rect) {
    let rows = Layout::vertical([Constraint::Ratio(1, 4); 4]).split(area);
    for (i, (title, measure, show)) in MEASURES.iter().enumerate() {
        let cols = Layout::horizontal([Constraint::Ratio(1, 2); 2]).split(rows[i / 2]);
        let cell = cols[i % 2];
        let width = cell.width.saturating_sub(2) as usize;
        let values: Vec<Option<f64>> = w
            .rows
            .iter()
            .skip(w.rows.len().saturating_sub(width))
            .map(measure)
            .collect();
        let peak = values.iter().flatten().fold(0f64, |a, b| a.max(*b));
        let now = values.last().copied().flatten();
        let label = match now {
            Some(v) => format!(" {title} {}  (max {}) ", show(v), show(peak)),
            None if w.rows.is_empty() => format!(" {title} "),
            None => format!(" {title}: not available here "),
        };
        // Bars are integers: scale so the peak is 1000.
        let scale = if peak > 0.0 { 1000.0 / peak } else { 0.0 };
        let bars: Vec<u64> = values
            .iter()
            .map(|v| (v.unwrap_or(0.0) * scale).round() as u64)
            .collect();
        let sparkline = Sparkline::default()
            .block(Block::bordered().title(label))
            .data(&bars)
            .max(1000)
            .style(Style::default().fg(COLORS[i % COLORS.len()]));
        f.render_widget(sparkline, cell);
    }
}

const COLORS: [Color; 4] = [Color::Cyan, Color::Green, Color::Yellow, Color::Magenta];
