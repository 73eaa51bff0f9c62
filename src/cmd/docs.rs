//! `completions SHELL` and `man`: shell completions and manual pages,
//! generated from the same clap definitions the binaries parse with, so
//! they cannot drift from the options a binary accepts.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::durable::{self, Durability};
use crate::error::{Error, Result};
use crate::exit::Code;

/// The shells `completions` writes for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    #[value(name = "powershell")]
    PowerShell,
}

impl From<CompletionShell> for Shell {
    fn from(s: CompletionShell) -> Shell {
        match s {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
            CompletionShell::Elvish => Shell::Elvish,
            CompletionShell::PowerShell => Shell::PowerShell,
        }
    }
}

/// The two subcommands every binary has, flattened into its own.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Docs {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: CompletionShell },
    /// Print the manual page, or write one per subcommand into a folder
    Man {
        /// Write NAME.1 and NAME-SUBCOMMAND.1 pages here
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Docs {
    /// Prints or writes what was asked for binary `C`.
    pub fn run<C: CommandFactory>(self) -> Result<Code> {
        match self {
            Docs::Completions { shell } => completions::<C>(shell),
            Docs::Man { dir } => man::<C>(dir.as_deref()),
        }
    }
}

/// Prints the completion script of binary `C` for `shell` on stdout.
pub fn completions<C: CommandFactory>(shell: CompletionShell) -> Result<Code> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(Shell::from(shell), &mut cmd, name, &mut out);
    super::print(&String::from_utf8_lossy(&out));
    Ok(Code::Success)
}

/// Prints the manual page of binary `C` (roff) on stdout, or with `dir`
/// writes one page per command and subcommand there (`state-manager.1`,
/// `state-manager-read.1`, ...), each atomically.
pub fn man<C: CommandFactory>(dir: Option<&Path>) -> Result<Code> {
    let mut cmd = C::command().disable_help_subcommand(true);
    cmd.build();
    match dir {
        None => {
            super::print(&String::from_utf8_lossy(&render(cmd)?));
        }
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Error::validation("bad --dir")
                    .with_path(dir)
                    .because("it is not a folder")
                    .hint("create it first, e.g. mkdir -p ~/.local/share/man/man1"));
            }
            let mut written = 0;
            write_pages(&cmd, dir, &mut written)?;
            super::println(&format!(
                "{written} manual pages written to {}",
                dir.display()
            ));
        }
    }
    Ok(Code::Success)
}

fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut usize) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    let page = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(page.get_filename());
    durable::replace(&path, &render(cmd.clone())?, Durability::Durable)?;
    *written += 1;
    Ok(())
}

fn render(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| Error::general("cannot render the manual page").because(e.to_string()))?;
    Ok(out)
}
