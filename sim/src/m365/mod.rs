//! Microsoft identity platform + Graph simulator.
