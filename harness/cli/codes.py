"""The command line's exit codes."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NOT_STARTED = 127  # as a shell says of a command it cannot run
EXIT_TIMED_OUT = 124  # as timeout(1) says of a command it stopped
EXIT_INTERRUPTED = 130  # as a shell says of a command stopped by SIGINT
