//! Per-tenant storage backends.
