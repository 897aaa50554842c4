//! The plan of a deploy: one line per resource saying what was (or, with `--dry-run`, would
//! be) done to it. Printed as the deploy goes, and summed up at the end.

use std::fmt;

/// What happens to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Made now.
    Create,
    /// Changed in place (a new task-definition revision, a service update, a policy).
    Update,
    /// Already as wanted: left alone.
    Reuse,
    /// Removed (destroy).
    Delete,
    /// Not there, nothing to remove (destroy).
    Absent,
}

impl Action {
    fn word(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Action::Create, false) => "created",
            (Action::Create, true) => "would create",
            (Action::Update, false) => "updated",
            (Action::Update, true) => "would update",
            (Action::Reuse, _) => "reused",
            (Action::Delete, false) => "deleted",
            (Action::Delete, true) => "would delete",
            (Action::Absent, _) => "absent",
        }
    }

    /// Whether this action changes anything in the account or the registry.
    pub fn mutates(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// One line of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub kind: &'static str,
    pub name: String,
    pub action: Action,
    pub detail: String,
}

/// Everything a run did or would do, in order.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// Print each step as it is recorded (the CLI); tests keep quiet.
    pub verbose: bool,
}

impl Plan {
    pub fn new(dry_run: bool, verbose: bool) -> Self {
        Self {
            dry_run,
            steps: Vec::new(),
            verbose,
        }
    }

    pub fn record(
        &mut self,
        kind: &'static str,
        name: impl Into<String>,
        action: Action,
        detail: impl Into<String>,
    ) {
        let step = Step {
            kind,
            name: name.into(),
            action,
            detail: detail.into(),
        };
        if self.verbose {
            println!("{}", Line(&step, self.dry_run));
        }
        self.steps.push(step);
    }

    /// How many steps changed (or would change) something.
    pub fn changes(&self) -> usize {
        self.steps.iter().filter(|s| s.action.mutates()).count()
    }

    /// The step for one resource kind, if the run reached it.
    pub fn find(&self, kind: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.kind == kind)
    }
}

struct Line<'a>(&'a Step, bool);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line(step, dry_run) = self;
        write!(
            f,
            "  {:<13} {:<18} {}",
            step.action.word(*dry_run),
            step.kind,
            step.name
        )?;
        if !step.detail.is_empty() {
            write!(f, "  ({})", step.detail)?;
        }
        Ok(())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(f, "{}", Line(step, self.dry_run))?;
        }
        Ok(())
    }
}
