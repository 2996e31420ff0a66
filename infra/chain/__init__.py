"""The local chain for tests and the demo: anvil (npm @foundry-rs/anvil) and Vanta's Avantis mock."""
