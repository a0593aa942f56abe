class PrerequisiteError(RuntimeError):
    """Something the platform needs is missing; ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\n  fix: {fix}")
        self.problem = problem
        self.fix = fix
