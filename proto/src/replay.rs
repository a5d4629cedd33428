//! Replay protection for encrypted datagrams: a sliding window over the sender's counter
//! (RFC 6479 style), so a datagram is accepted at most once even when the network reorders.

/// Counters this far below the highest one seen are still accepted once.
pub const WINDOW: u64 = 2048;

const WORDS: usize = (WINDOW / 64) as usize;

/// Which recent counters were seen.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest counter accepted so far, plus one (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted (call before the expensive decryption).
    pub fn check(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & (1 << bit) == 0
    }

    /// Records `counter` as seen; only call once the datagram authenticated.
    pub fn mark(&mut self, counter: u64) {
        if counter >= self.next {
            let advance = counter + 1 - self.next;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for c in self.next..=counter {
                    let (word, bit) = Self::slot(c);
                    self.bits[word] &= !(1 << bit);
                }
            }
            self.next = counter + 1;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= 1 << bit;
    }

    fn slot(counter: u64) -> (usize, u64) {
        (((counter / 64) % WORDS as u64) as usize, counter % 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_counter_once_within_the_window() {
        let mut w = ReplayWindow::default();
        for c in [0, 5, 3, 4, 1, 2] {
            assert!(w.check(c), "{c}");
            w.mark(c);
            assert!(!w.check(c), "{c} replayed");
        }
        w.mark(10_000);
        assert!(!w.check(5), "far behind the window");
        assert!(w.check(10_000 - 100));
        assert!(!w.check(10_000 - WINDOW - 1));
        assert!(w.check(10_001));
    }
}
