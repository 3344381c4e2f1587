//! Status condition helpers shared by all controllers.
