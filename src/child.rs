//! Running a child command: spawn it, wait, and map how it ended to one exit
//! code (its own, or 128+N when signal N ended it). Shared by
//! `lock-manager run` and `error-recovery retry`.
