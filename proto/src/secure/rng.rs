//! Deterministic randomness for the secure layer: every random choice (ephemeral keys, session
//! indices, cookie secrets and nonces) comes from the seed in [`super::SecureConfig`], so tests
//! replay exactly and production passes fresh OS randomness as the seed. The generator is
//! `rand_chacha`'s ChaCha20; this module only adapts it to snow and to our call sites.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

/// A ChaCha20 CSPRNG seeded once; a newtype so snow can take it as its [`Random`].
pub(super) struct SeededRng(ChaCha20Rng);

impl SeededRng {
    pub(super) fn from_seed(seed: [u8; 32]) -> Self {
        SeededRng(ChaCha20Rng::from_seed(seed))
    }
    pub(super) fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    /// 32 fresh bytes: a secret, or the seed of a child generator.
    pub(super) fn seed(&mut self) -> [u8; 32] {
        let mut seed = [0; 32];
        self.fill(&mut seed);
        seed
    }
    pub(super) fn u32(&mut self) -> u32 {
        self.0.next_u32()
    }
}

impl Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.fill(dest);
        Ok(())
    }
}

/// snow's default primitives, with our seeded RNG instead of the OS's.
pub(crate) struct SeededResolver(pub(crate) [u8; 32]);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRng::from_seed(self.0)))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

#[cfg(test)]
mod tests {
    use super::SeededRng;

    /// The seeding contract the tests rely on: one seed, one sequence; another seed, another.
    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let draw = |seed| {
            let mut rng = SeededRng::from_seed(seed);
            (rng.seed(), rng.u32())
        };
        assert_eq!(draw([1; 32]), draw([1; 32]));
        assert_ne!(draw([1; 32]), draw([2; 32]));
    }
}
