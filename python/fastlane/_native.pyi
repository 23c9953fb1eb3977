"""Type stubs of the compiled module ``fastlane._native``."""

from typing import Any, Callable, Sequence

__version__: str

class ArrowBatch:
    """One record batch lent to Python (Arrow PyCapsule interface)."""

    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __arrow_c_schema__(self) -> object: ...
    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

class Config:
    """A validated pipeline configuration."""

    @property
    def replication_mode(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    def sections(self) -> dict[str, tuple[str, Any]]: ...
    def run(
        self,
        source: tuple[Any, dict[str, Any]] | None = None,
        transform: tuple[Any, dict[str, Any]] | None = None,
        target: tuple[Any, dict[str, Any]] | None = None,
        progress: str = "auto",
    ) -> dict[str, Any]: ...

def cli_main(argv: Sequence[str]) -> int: ...
def set_package_plugin_dir(path: str) -> None: ...
def load_config(
    text: str,
    file: str,
    source: str | None = None,
    transform: str | None = None,
    target: str | None = None,
    python: Sequence[tuple[str, str, str, str | None]] = (),
    validator: Callable[[str, str, Any, str], list[tuple[str, str]]] | None = None,
    plugin_dirs: Sequence[str] = (),
) -> Config: ...
def rows_to_batch(rows: list[dict[str, Any]], schema: object | None = None) -> ArrowBatch: ...
