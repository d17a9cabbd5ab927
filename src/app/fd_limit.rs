//! The open-file limit: every connection is a file descriptor, so a node
//! raises its soft `RLIMIT_NOFILE` to the hard limit at start, and logs both,
//! rather than letting idle sockets run it out at a distribution's default
//! of 1,024.

/// The soft and hard open-file limits after raising the soft one to the hard
/// one; `None` where the platform has no such limit or the calls failed.
pub fn raise_open_files() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit for the call to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit that asks for no more than the
            // hard limit, which an unprivileged process may always set.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        // `rlim_t` is u64 on Linux but not on every unix
        #[allow(clippy::unnecessary_cast)]
        Some((limit.rlim_cur as u64, limit.rlim_max as u64))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_open_files().expect("unix has RLIMIT_NOFILE");
        assert_eq!(soft, hard);
        // and what the kernel reports now agrees
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `now` is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        #[allow(clippy::unnecessary_cast)]
        let now_soft = now.rlim_cur as u64;
        assert_eq!(now_soft, soft);
    }
}
