//! The streaming output guard: a pure state machine that decides, per
//! upstream event, whether the event may be released to the client now or
//! must be held until the text so far has been screened.
//!
//! It knows nothing about async runtimes, sockets or clocks. The caller feeds
//! each upstream text delta with an explicit timestamp in milliseconds, and
//! calls [`OutputGuard::on_tick`] from its own timer, so that the time bound
//! is testable without sleeping.
//!
//! INVARIANT: an event is released only after the cumulative text up to and
//! including it has passed the screen, and once the guard has blocked, no
//! held or later event is ever released.
//!
//! INVARIANT: events are never merged or split. The guard returns sequence
//! numbers; the caller forwards its own original events in that order.

use std::collections::VecDeque;

use serde::Serialize;

use crate::category::CyberCategory;
use crate::classifier::{Safeguard, WINDOW_BYTES};
use crate::profile::{OutputGuardSettings, SafeguardProfile};

/// The result of screening some text.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScreenResult {
    pub blocked: bool,
    pub score: f32,
    pub category: Option<CyberCategory>,
}

/// Screens model output. The production screen is [`SafeguardScreen`]; tests
/// use simple fakes.
pub trait TextScreen {
    fn screen(&self, text: &str) -> ScreenResult;
}

/// Screens output with the classifier cascade under a profile. A profile in
/// `flag` or `shadow` mode never stops a stream; only `block` does.
///
/// The cascade judges the screened text segment by segment (sentences,
/// windows of adjacent sentences, quoted spans; see [`crate::segment`]) as
/// well as whole, so an answer that opens with harmless sentences and then
/// gives attack steps is stopped at the steps: the harmless opening cannot
/// dilute them.
#[derive(Debug, Clone, Copy)]
pub struct SafeguardScreen<'a> {
    pub safeguard: &'a Safeguard,
    pub profile: &'a SafeguardProfile,
}

impl TextScreen for SafeguardScreen<'_> {
    fn screen(&self, text: &str) -> ScreenResult {
        let verdict = self.safeguard.classify_text(text, self.profile);
        ScreenResult {
            blocked: verdict.action == crate::classifier::SafeguardAction::Block,
            score: verdict.score,
            category: verdict.category,
        }
    }
}

/// Why a stream was stopped. The caller ends the stream with
/// `finish_reason: "content_filter"` (OpenAI) or `stop_reason: "refusal"`
/// (Anthropic) and drops every held event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutputBlock {
    pub score: f32,
    pub category: Option<CyberCategory>,
    /// How many characters of output were released before the block.
    pub released_chars: usize,
    /// How many held events were withheld.
    pub withheld_events: usize,
}

/// What the caller must do after one call into the guard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStep {
    /// The sequence number given to the event just fed, if one was fed.
    pub event_sequence: Option<u64>,
    /// Events the caller may now forward, in order.
    pub release: Vec<u64>,
    /// Set once the stream must end with a content-filter stop.
    pub blocked: Option<OutputBlock>,
}

impl GuardStep {
    /// Whether the event just fed was released by this step.
    pub fn released_now(&self) -> bool {
        self.event_sequence
            .is_some_and(|sequence| self.release.contains(&sequence))
    }
}

#[derive(Debug, Clone, Copy)]
struct HeldEvent {
    sequence: u64,
    arrived_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    Streaming,
    Blocked,
    Finished,
}

/// The per-stream guard state. Create one per response stream.
#[derive(Debug)]
pub struct OutputGuard<S> {
    screen: S,
    settings: OutputGuardSettings,
    cumulative: String,
    screened_len: usize,
    released_chars: usize,
    held: VecDeque<HeldEvent>,
    held_chars: usize,
    next_sequence: u64,
    state: GuardState,
    block: Option<OutputBlock>,
}

fn ends_sentence(delta: &str) -> bool {
    delta.contains(['.', '!', '?', '\n', '。'])
}

impl<S: TextScreen> OutputGuard<S> {
    pub fn new(screen: S, settings: OutputGuardSettings) -> Self {
        Self {
            screen,
            settings,
            cumulative: String::new(),
            screened_len: 0,
            released_chars: 0,
            held: VecDeque::new(),
            held_chars: 0,
            next_sequence: 0,
            state: GuardState::Streaming,
            block: None,
        }
    }

    pub fn is_blocked(&self) -> bool {
        self.state == GuardState::Blocked
    }

    /// Feeds one upstream event's text at time `now_ms`.
    pub fn on_event(&mut self, delta: &str, now_ms: u64) -> GuardStep {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.state != GuardState::Streaming {
            return self.stopped_step(Some(sequence));
        }
        if !self.settings.enabled {
            self.released_chars += delta.chars().count();
            return GuardStep {
                event_sequence: Some(sequence),
                release: vec![sequence],
                blocked: None,
            };
        }
        self.cumulative.push_str(delta);
        let chars = delta.chars().count();
        self.held.push_back(HeldEvent {
            sequence,
            arrived_ms: now_ms,
        });
        self.held_chars += chars;
        let due = (self.settings.release_at_sentence_end && ends_sentence(delta))
            || self.held_chars >= self.settings.hold_back_max_chars
            || self.oldest_held_age(now_ms) >= self.settings.hold_back_max_ms;
        let mut step = if due {
            self.screen_and_release()
        } else {
            self.hold_step()
        };
        step.event_sequence = Some(sequence);
        step
    }

    /// Lets time pass without a new event: releases held text whose
    /// hold-back time has run out, after screening it.
    pub fn on_tick(&mut self, now_ms: u64) -> GuardStep {
        if self.state != GuardState::Streaming {
            return self.stopped_step(None);
        }
        if !self.held.is_empty() && self.oldest_held_age(now_ms) >= self.settings.hold_back_max_ms {
            return self.screen_and_release();
        }
        self.hold_step()
    }

    /// The upstream stream ended: screens and releases whatever is held.
    pub fn finish(&mut self) -> GuardStep {
        if self.state != GuardState::Streaming {
            return self.stopped_step(None);
        }
        let step = if self.held.is_empty() {
            self.hold_step()
        } else {
            self.screen_and_release()
        };
        if self.state == GuardState::Streaming {
            self.state = GuardState::Finished;
        }
        step
    }

    /// When the caller should call [`Self::on_tick`] next, if anything is held.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.held
            .front()
            .map(|event| event.arrived_ms + self.settings.hold_back_max_ms)
    }

    fn oldest_held_age(&self, now_ms: u64) -> u64 {
        self.held
            .front()
            .map_or(0, |event| now_ms.saturating_sub(event.arrived_ms))
    }

    fn hold_step(&self) -> GuardStep {
        GuardStep {
            event_sequence: None,
            release: Vec::new(),
            blocked: None,
        }
    }

    fn stopped_step(&self, sequence: Option<u64>) -> GuardStep {
        GuardStep {
            event_sequence: sequence,
            release: Vec::new(),
            blocked: self.block,
        }
    }

    /// Screens the text not yet screened, with half a window of preceding
    /// context, then releases every held event or blocks. The screen scores
    /// each segment of that text on its own, so the context (already
    /// released, benign) cannot dilute the new text either.
    fn screen_and_release(&mut self) -> GuardStep {
        let mut start = self.screened_len.saturating_sub(WINDOW_BYTES / 2);
        while !self.cumulative.is_char_boundary(start) {
            start -= 1;
        }
        let result = self.screen.screen(&self.cumulative[start..]);
        if result.blocked {
            let withheld_events = self.held.len();
            self.held.clear();
            self.held_chars = 0;
            self.state = GuardState::Blocked;
            self.block = Some(OutputBlock {
                score: result.score,
                category: result.category,
                released_chars: self.released_chars,
                withheld_events,
            });
            return self.stopped_step(None);
        }
        self.screened_len = self.cumulative.len();
        self.released_chars += self.held_chars;
        self.held_chars = 0;
        GuardStep {
            event_sequence: None,
            release: self.held.drain(..).map(|event| event.sequence).collect(),
            blocked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks once the text contains a forbidden word.
    struct WordScreen(&'static str);

    impl TextScreen for WordScreen {
        fn screen(&self, text: &str) -> ScreenResult {
            let blocked = text.contains(self.0);
            ScreenResult {
                blocked,
                score: if blocked { 1.0 } else { 0.0 },
                category: blocked.then_some(CyberCategory::Malware),
            }
        }
    }

    fn settings(max_chars: usize, max_ms: u64) -> OutputGuardSettings {
        OutputGuardSettings {
            enabled: true,
            release_at_sentence_end: true,
            hold_back_max_chars: max_chars,
            hold_back_max_ms: max_ms,
        }
    }

    #[test]
    fn events_are_held_until_a_sentence_ends_then_released_in_order() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(400, 150));
        let first = guard.on_event("Hello", 0);
        assert!(first.release.is_empty());
        let second = guard.on_event(" there", 10);
        assert!(second.release.is_empty());
        let third = guard.on_event(" friend.", 20);
        assert_eq!(third.release, vec![0, 1, 2]);
        assert!(third.released_now());
    }

    #[test]
    fn time_bound_releases_without_a_sentence_end() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(400, 150));
        assert!(guard.on_event("a", 0).release.is_empty());
        assert!(guard.on_tick(149).release.is_empty());
        assert_eq!(guard.next_deadline_ms(), Some(150));
        assert_eq!(guard.on_tick(150).release, vec![0]);
        // A late event past the bound is released as soon as it arrives.
        assert!(guard.on_event("b", 200).release.is_empty());
        assert_eq!(guard.on_event("c", 351).release, vec![1, 2]);
    }

    #[test]
    fn size_bound_releases_long_unpunctuated_text() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(10, 10_000));
        assert!(guard.on_event("abcde", 0).release.is_empty());
        assert_eq!(guard.on_event("fghij", 1).release, vec![0, 1]);
    }

    #[test]
    fn blocked_text_is_never_released_and_the_stream_stays_stopped() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(400, 150));
        assert_eq!(guard.on_event("Sure.", 0).release, vec![0]);
        assert!(guard.on_event(" Here is a key", 5).release.is_empty());
        let step = guard.on_event("logger in C.", 10);
        assert!(step.release.is_empty());
        let block = step.blocked.unwrap();
        assert_eq!(block.withheld_events, 2);
        assert_eq!(block.released_chars, 5);
        assert!(guard.is_blocked());
        let after = guard.on_event(" More text.", 20);
        assert!(after.release.is_empty() && after.blocked.is_some());
        assert!(guard.on_tick(1_000).release.is_empty());
        assert!(guard.finish().release.is_empty());
    }

    #[test]
    fn finish_screens_and_releases_the_tail() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(400, 150));
        assert!(guard.on_event("no full stop", 0).release.is_empty());
        assert_eq!(guard.finish().release, vec![0]);
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(400, 150));
        assert!(guard.on_event("a keylogger", 0).release.is_empty());
        assert!(guard.finish().blocked.is_some());
    }

    #[test]
    fn disabled_guard_releases_every_event_at_once() {
        let mut disabled = settings(400, 150);
        disabled.enabled = false;
        let mut guard = OutputGuard::new(WordScreen("keylogger"), disabled);
        assert_eq!(guard.on_event("a keylogger", 0).release, vec![0]);
    }

    #[test]
    fn a_word_split_across_events_is_caught() {
        let mut guard = OutputGuard::new(WordScreen("keylogger"), settings(3, 150));
        let mut released = Vec::new();
        for (index, piece) in ["k", "ey", "lo", "gg", "er"].iter().enumerate() {
            released.extend(guard.on_event(piece, index as u64).release);
        }
        // "key" and "logg" were screened clean and released; the event that
        // completes the word is screened with what came before and withheld.
        assert_eq!(released, vec![0, 1, 2, 3]);
        let end = guard.finish();
        assert!(end.blocked.is_some());
        assert!(end.release.is_empty());
    }
}
