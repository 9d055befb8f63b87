"""The import structure: no module of training/ imports another in a circle, hear_codec never
imports training, and the paper path never reaches the built-in demo. Read from the source (every
import statement, those inside functions too), so an import made late to dodge a circle still counts."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_graph(package: str) -> dict:
    """{module: the modules of the repository it imports}, for every module below ``package``."""
    files = {}
    for path in (REPO / package).rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package (its own, for an __init__)
                    here = module.split(".")[: len(module.split(".")) - node.level + is_package]
                    base = ".".join(here + ([node.module] if node.module else []))
                else:
                    base = node.module
                imported.add(base)
                imported.update(f"{base}.{alias.name}" for alias in node.names)
        # a module's own parent packages run first anyway: importing them is no edge of a circle
        graph[module] = {m for m in imported if m != module and not module.startswith(m + ".")
                         and m.split(".")[0] in ("hear_codec", "training")}
    return graph


def circles(graph: dict) -> list:
    """Every circle a depth-first walk meets, each as [a, b, ..., a]."""
    found, state, path = [], {}, []

    def walk(module):
        state[module] = "open"
        path.append(module)
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "open":
                found.append(path[path.index(other):] + [other])
            elif other in graph and other not in state:
                walk(other)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module)
    return found


def test_no_module_of_training_imports_another_in_a_circle():
    graph = import_graph("training")
    assert len(graph) > 20 and graph["training.encodecmae.module"]  # the walk sees the package
    assert circles(graph) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_hear_codec_never_imports_training():
    graph = import_graph("hear_codec")
    assert not {m: sorted(i for i in imported if i.startswith("training"))
                for m, imported in graph.items() if any(i.startswith("training") for i in imported)}


def reachable(graph: dict, start: str) -> set:
    """Every module ``start`` imports, directly or through others (packages count as their modules)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        for other in graph.get(module, ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def paper_path(graph: dict) -> list:
    """The modules a paper-scale run is made of: the engine, the data modules, the frozen codec's
    options, and each family's module, masking, losses, targets and train."""
    families = {m.split(".")[1] for m in graph if m.count(".") == 2 and m.endswith(".module")}
    jobs = ("module", "masking", "losses", "targets", "train")
    return sorted(["training.engine", "training.codec"] + [m for m in graph if m.startswith("training.data.")] +
                  [f"training.{f}.{job}" for f in families for job in jobs if f"training.{f}.{job}" in graph])


def test_the_paper_path_never_imports_the_built_in_demo():
    graph = import_graph("training")
    modules = paper_path(graph)
    assert {"training.engine", "training.data.crops", "training.data.manifest", "training.data.sampler",
            "training.encodecmae.train", "training.encodecmae.targets", "training.audioformer.train",
            "training.enclap.module"} <= set(modules)
    assert "training.builtin.recipes" in graph  # the demo package is there, and the walk sees it
    leaks = {m: sorted(i for i in reachable(graph, m) if i.startswith("training.builtin")) for m in modules}
    assert {m: found for m, found in leaks.items() if found} == {}


def test_a_leak_through_another_module_is_found():
    graph = {"training.encodecmae.train": {"training.data.crops"}, "training.data.crops": {"training.builtin.corpus"}}
    assert "training.builtin.corpus" in reachable(graph, "training.encodecmae.train")


def test_no_module_of_hear_codec_imports_another_in_a_circle():
    graph = import_graph("hear_codec")
    assert len(graph) > 20 and graph["hear_codec.embed"]  # the walk sees the package
    assert circles(graph) == []
    assert circles({**graph, **import_graph("training")}) == []  # nor through training


def test_cli_and_errors_import_no_domain_module():
    """Every module may use cli and errors, so they import nothing of hear_codec but errors (a leaf)."""
    graph = import_graph("hear_codec")
    assert {m for m in graph["hear_codec.errors"] if m in graph} == set()
    assert {m for m in graph["hear_codec.cli"] if m in graph} == {"hear_codec.errors"}
