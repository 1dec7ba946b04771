"""Errors that end the program with a one-line message instead of a traceback."""


class InputError(Exception):
    """Bad input from the user (matrix file, CLI arguments, manifest). Exit code 2.

    Holds one line per problem so that every problem is reported at once.
    """

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
