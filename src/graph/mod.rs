//! Entra ID tokens, Microsoft Graph and consent checks.
