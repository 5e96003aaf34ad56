//! NIfTI writer (under construction).
