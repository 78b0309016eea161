//! The backtracking search over one chain's hops; see the parent module.

use std::collections::HashSet;

/// Whether hops `a` and `b` are different hops within `distance`.
pub(super) fn near(a: usize, b: usize, distance: usize) -> bool {
    a != b && a.abs_diff(b) <= distance
}

/// A dead end of the search, at `depth` hops assigned.
#[derive(Debug, Clone)]
pub(super) enum Stuck {
    /// `hop` had no remailer left given `assigned`.
    Hop {
        hop: usize,
        assigned: Vec<Option<usize>>,
    },
    /// The open hops of the window `first..=last`, which must all differ,
    /// have fewer remailers to choose from than there are hops.
    Window {
        first: usize,
        last: usize,
        needed: usize,
        available: usize,
        depth: usize,
    },
}

impl Stuck {
    fn depth(&self) -> usize {
        match self {
            Self::Hop { assigned, .. } => assigned.iter().flatten().count(),
            Self::Window { depth, .. } => *depth,
        }
    }
}

/// The backtracking search over one chain; see the module docs.
pub(super) struct Search {
    domains: Vec<Vec<usize>>,
    assigned: Vec<Option<usize>>,
    distance: usize,
    first: usize,
}

impl Search {
    /// `domains` are each hop's allowed remailers in the order to try them;
    /// `fixed` are the hops already decided. Hop `first` is assigned before
    /// the others.
    pub(super) fn new(
        domains: Vec<Vec<usize>>,
        fixed: Vec<Option<usize>>,
        distance: usize,
        first: usize,
    ) -> Self {
        Self {
            domains,
            assigned: fixed,
            distance,
            first,
        }
    }

    /// Whether `value` at `hop` repeats a remailer within the distance.
    fn conflicts(&self, hop: usize, value: usize) -> bool {
        let mut hops = self.assigned.iter().enumerate();
        hops.any(|(j, a)| *a == Some(value) && near(hop, j, self.distance))
    }

    /// The choices left for each open hop; `None` for assigned hops.
    fn choices(&self) -> Vec<Option<Vec<usize>>> {
        let hops = self.domains.iter().zip(&self.assigned).enumerate();
        hops.map(|(hop, (domain, assigned))| {
            assigned.is_none().then(|| {
                let free = domain.iter().copied();
                free.filter(|&v| !self.conflicts(hop, v)).collect()
            })
        })
        .collect()
    }

    /// The first window of `distance + 1` hops whose open hops have fewer
    /// choices, together, than there are open hops.
    fn short_window(&self, choices: &[Option<Vec<usize>>]) -> Option<Stuck> {
        let width = self.distance.saturating_add(1).min(choices.len()).max(1);
        choices
            .windows(width)
            .enumerate()
            .find_map(|(first, window)| {
                let open: Vec<&Vec<usize>> = window.iter().flatten().collect();
                let union: HashSet<usize> = open.iter().copied().flatten().copied().collect();
                (union.len() < open.len()).then(|| Stuck::Window {
                    first,
                    last: first + width - 1,
                    needed: open.len(),
                    available: union.len(),
                    depth: self.assigned.iter().flatten().count(),
                })
            })
    }

    /// The open hop to assign next with its choices, or `None` when all are
    /// assigned: `first` if open, else the one with the fewest choices. A
    /// hop without choices or a short window is a dead end.
    fn next(&self) -> Result<Option<(usize, Vec<usize>)>, Stuck> {
        let choices = self.choices();
        let open = choices.iter().enumerate();
        let open: Vec<(usize, &Vec<usize>)> =
            open.filter_map(|(h, c)| Some((h, c.as_ref()?))).collect();
        if let Some((hop, _)) = open.iter().find(|(_, c)| c.is_empty()) {
            let assigned = self.assigned.clone();
            return Err(Stuck::Hop {
                hop: *hop,
                assigned,
            });
        }
        if let Some(stuck) = self.short_window(&choices) {
            return Err(stuck);
        }
        let first = open.iter().find(|(h, _)| *h == self.first);
        let fewest = open.iter().min_by_key(|(_, c)| c.len());
        Ok(first.or(fewest).map(|(h, c)| (*h, c.to_vec())))
    }

    /// The chain found by a successful [`Self::solve`].
    pub(super) fn chain(&self) -> Vec<usize> {
        self.assigned.iter().flatten().copied().collect()
    }

    fn set(&mut self, hop: usize, value: Option<usize>) {
        if let Some(a) = self.assigned.get_mut(hop) {
            *a = value;
        }
    }

    /// Assigns every open hop, or reports the shallowest dead end met: the
    /// one that depends least on the search's own picks.
    pub(super) fn solve(&mut self) -> Result<(), Stuck> {
        let Some((hop, choices)) = self.next()? else {
            return Ok(());
        };
        let mut shallowest: Option<Stuck> = None;
        for value in choices {
            self.set(hop, Some(value));
            match self.solve() {
                Ok(()) => return Ok(()),
                Err(s) if shallowest.as_ref().is_none_or(|b| s.depth() < b.depth()) => {
                    shallowest = Some(s);
                }
                Err(_) => {}
            }
            self.set(hop, None);
        }
        Err(shallowest.unwrap_or_else(|| Stuck::Hop {
            hop,
            assigned: self.assigned.clone(),
        }))
    }
}
