"""llama.cpp as a CPU reference: convert a transformers checkpoint to GGUF and time its decoding with llama-bench.

Optional: nothing in litllm needs it, and benchmarks/decode.py adds its rows only where it is built. Build it once
(~8 min on 2 cores, 2.6 GB); everything comes from the package registry (the llama-cpp-python source archive vendors
llama.cpp; cmake, ninja and the converter's torch, transformers and gguf go into a venv of their own):

    .venv/bin/python benchmarks/llamacpp_ref.py build [--dir DIR] [--isa avx2]
    .venv/bin/python benchmarks/llamacpp_ref.py bench HF_DIR [--dir DIR] [--isa avx2]   # f32, bf16, q8_0 tokens/s

DIR is --dir, else $LITLLM_LLAMA_CPP, else ~/.cache/litllm-bench/llama.cpp, and holds `venv/` (the converter's
python) and `llama.cpp/` (sources, `build/bin/llama-bench`, `build/bin/llama-quantize`). `--isa native` (the default)
builds for this CPU (`GGML_NATIVE`); `--isa avx2` builds a second copy into `build-avx2/`, for AVX2 + FMA + F16C
only, so that litllm forced to AVX2 (`decode.py --isa avx2`) is compared with a llama.cpp that runs as on such a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from litllm.paths import atomic_path, atomic_write_text

SOURCE = "llama-cpp-python==0.3.36"  # its sdist vendors llama.cpp (ggml 0.25.3)
OUTTYPES = ("f32", "bf16", "q8_0")
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=ON", "-DLLAMA_BUILD_SERVER=OFF",
               "-DLLAMA_BUILD_APP=OFF")  # fmt: skip
# what llama.cpp is built for, and where: this CPU's every instruction, or AVX2 + FMA + F16C alone (most laptops and
# VMs), as litllm's `--isa avx2` runs
ISA_FLAGS = {
    "native": ("-DGGML_NATIVE=ON",),
    "avx2": ("-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DGGML_BMI2=ON", "-DGGML_AVX512=OFF", "-DGGML_AVX_VNNI=OFF"),
}  # fmt: skip
BUILDS = {"native": "build", "avx2": "build-avx2"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
EOS = "<|endoftext|>"
# Runs convert_hf_to_gguf.py (argv[1]) on argv[2:] with two fixes. transformers 5 saves GPT-NeoX's `rotary_pct`
# as `partial_rotary_factor`, which the converter does not read. llama.cpp names a BPE pre-tokenizer by a hash of
# its output and refuses hashes it does not know, like that of the tokenizer `convert` makes up; speed does not
# depend on it, so fall back to GPT-2's (the regex that tokenizer uses).
CONVERT = """
import logging, sys
sys.path.insert(0, sys.argv[1].rpartition("/")[0])
try:
    from conversion.base import ModelBase, TextModel
except ImportError:
    from convert_hf_to_gguf import ModelBase, TextModel
load_hparams, known_pre = ModelBase.load_hparams, TextModel.get_vocab_base_pre
def with_rotary_pct(*args, **kw):
    h = load_hparams(*args, **kw)
    factor = h.get("partial_rotary_factor", (h.get("rope_parameters") or {}).get("partial_rotary_factor"))
    if factor is not None:
        h.setdefault("rotary_pct", factor)
    return h
def get_vocab_base_pre(self, tokenizer):
    try:
        return known_pre(self, tokenizer)
    except NotImplementedError:
        logging.warning("unknown BPE pre-tokenizer: writing gpt-2's")
        return "gpt-2"
ModelBase.load_hparams = staticmethod(with_rotary_pct)
TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = sys.argv[1:]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def default_dir() -> Path:
    """$LITLLM_LLAMA_CPP, default ~/.cache/litllm-bench/llama.cpp."""
    return Path(os.environ.get("LITLLM_LLAMA_CPP") or Path.home() / ".cache" / "litllm-bench" / "llama.cpp")


@dataclass(frozen=True)
class LlamaCpp:
    """A llama.cpp build: its source tree (with `build/bin/`), the python that runs its converter, and which build of
    the tree it runs (`BUILDS`)."""

    root: Path
    python: Path
    isa: str = "native"

    def tool(self, name: str) -> Path:
        """One of the built programs, `llama-bench` or `llama-quantize`."""
        return self.root / BUILDS[self.isa] / "bin" / name

    def convert(self, hf_dir: str | os.PathLike, out_dir: str | os.PathLike, outtype: str) -> Path:
        """The GGUF file `out_dir/<hf_dir name>-<outtype>.gguf`, made unless one newer than the weights is there."""
        if outtype not in OUTTYPES:
            raise ValueError(f"outtype {outtype!r} is not one of {', '.join(OUTTYPES)}")
        hf_dir = Path(hf_dir)
        out = Path(out_dir) / f"{hf_dir.name}-{outtype}.gguf"
        sources = [*hf_dir.glob("*.safetensors"), hf_dir / "config.json"]
        if out.is_file() and all(out.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists()):
            return out
        if outtype == "q8_0":  # llama-quantize from the f32 file (llama.cpp's usual route)
            source = self.convert(hf_dir, out_dir, "f32")
            with atomic_path(out) as tmp:
                run([self.tool("llama-quantize"), source, tmp, "Q8_0"])
            return out
        with tempfile.TemporaryDirectory() as tmp_dir, atomic_path(out) as tmp:
            model_dir = with_tokenizer(hf_dir, Path(tmp_dir))
            script = self.root / "convert_hf_to_gguf.py"
            run([self.python, "-c", CONVERT, script, model_dir, "--outtype", outtype, "--outfile", tmp])
        return out

    def bench_row(self, gguf: str | os.PathLike, threads=2, prompt_tokens=32, new_tokens=128, repeats=3) -> dict:
        """llama-bench's JSON record of the decoding test (tg: `new_tokens` from an empty context) at batch 1."""
        knobs = {"-m": gguf, "-t": threads, "-p": prompt_tokens, "-n": new_tokens, "-r": repeats, "-o": "json"}
        rows = json.loads(run([self.tool("llama-bench"), *(x for kv in knobs.items() for x in kv)]))
        tg = [r for r in rows if r["n_prompt"] == 0 and r["n_gen"] == new_tokens]
        if not tg:
            raise RuntimeError(f"llama-bench gave no tg{new_tokens} row for {gguf}: {rows}")
        return tg[0]

    def bench(self, gguf: str | os.PathLike, threads=2, prompt_tokens=32, new_tokens=128, repeats=3) -> float:
        """Decoding tokens/s of `gguf` at batch 1: the mean over `repeats` runs of llama-bench's tg test."""
        return self.bench_row(gguf, threads, prompt_tokens, new_tokens, repeats)["avg_ts"]


def source_tree(build_dir: Path) -> Path:
    """Where the llama.cpp sources lie in a build folder (or `build_dir` itself, a llama.cpp checkout)."""
    return build_dir if (build_dir / "convert_hf_to_gguf.py").is_file() else build_dir / "llama.cpp"


def why_not(build_dir: str | os.PathLike | None = None, isa: str = "native") -> str:
    """Why no usable llama.cpp build for `isa` is in `build_dir` (default: `default_dir()`); empty when there is."""
    build_dir = Path(build_dir).expanduser() if build_dir else default_dir()
    root = source_tree(build_dir)
    bin_dir = root / BUILDS[isa] / "bin"
    wanted = [root / "convert_hf_to_gguf.py", bin_dir / "llama-bench", bin_dir / "llama-quantize"]
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        how = f"{sys.executable} {__file__} build --dir {build_dir} --isa {isa}"
        return f"no llama.cpp build in {build_dir} (missing {', '.join(missing)}); build one with `{how}`"
    python = converter_python(build_dir)
    probe = subprocess.run([python, "-c", "import gguf, torch, transformers"], capture_output=True, text=True)
    if probe.returncode:
        return f"{python} cannot run llama.cpp's converter: {probe.stderr.strip().splitlines()[-1]}"
    return ""


def converter_python(build_dir: Path) -> Path:
    """The build folder's venv python, else this one."""
    venv = build_dir / "venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def find(build_dir: str | os.PathLike | None = None, isa: str = "native") -> LlamaCpp | None:
    """The llama.cpp build for `isa` in `build_dir` (default: `default_dir()`); None when `why_not` finds none."""
    if why_not(build_dir, isa):
        return None
    build_dir = Path(build_dir).expanduser() if build_dir else default_dir()
    return LlamaCpp(source_tree(build_dir).resolve(), converter_python(build_dir), isa)


def run(cmd: list) -> str:
    """Run `cmd`, return its stdout; a failure raises with the command and the end of its stderr."""
    cmd = [str(c) for c in cmd]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(cmd[:1] + cmd[-6:])}` exited with {done.returncode}:\n{tail}")
    return done.stdout


def with_tokenizer(hf_dir: Path, scratch: Path) -> Path:
    """`hf_dir` when it has a tokenizer; else a copy (of links) in `scratch` with a made-up one of its vocab size."""
    if any((hf_dir / f).is_file() for f in TOKENIZER_FILES):
        return hf_dir
    for f in hf_dir.iterdir():
        (scratch / f.name).symlink_to(f.resolve())
    vocab_size = json.loads((hf_dir / "config.json").read_text())["vocab_size"]
    atomic_write_text(scratch / "tokenizer.json", byte_level_bpe(vocab_size))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS}
    atomic_write_text(scratch / "tokenizer_config.json", json.dumps(config))
    return scratch


def byte_level_bpe(vocab_size: int) -> str:
    """tokenizer.json of a GPT-2-style byte-level BPE with exactly `vocab_size` tokens: EOS, the 256 bytes, then
    merges in a fixed order (byte pairs, then triples, ...). llama.cpp needs a vocabulary and merges in the file;
    which tokens they are does not change decoding speed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: PLC0415 - only `convert` needs it

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < len(alphabet) + 1:
        raise ValueError(f"vocab_size {vocab_size} is too small for a byte-level tokenizer: at least 257")
    vocab = {EOS: 0} | {c: i + 1 for i, c in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    stems = iter(alphabet)
    grown: list[str] = []  # tokens made by merges, extended in turn once the single bytes are used up
    while len(vocab) < vocab_size:
        stem = next(stems, None)
        if stem is None:
            stems, grown = iter(grown), []
            continue
        for c in alphabet[: vocab_size - len(vocab)]:
            merges.append((stem, c))
            vocab[stem + c] = len(vocab)
            grown.append(stem + c)
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return tok.to_str()


def build(build_dir: Path, jobs: int = 2, isa: str = "native") -> None:
    """Download, unpack and build llama.cpp in `build_dir`; steps already done are skipped (re-run to resume)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    venv, root = build_dir / "venv", build_dir / "llama.cpp"
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    if not venv.exists():
        step(f"venv {venv}", [sys.executable, "-m", "venv", venv])
    step("cmake, ninja", [*pip, "cmake", "ninja"])
    if not root.is_dir():
        with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
            step(f"download {SOURCE}", [*pip[:3], "download", "--no-binary", ":all:", "--no-deps", SOURCE, "-d", tmp])
            (archive,) = Path(tmp).glob("*.tar.gz")
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            (sdist,) = Path(tmp).glob("*/vendor/llama.cpp")
            sdist = sdist.parents[1]
            shutil.rmtree(build_dir / "src" / sdist.name, ignore_errors=True)  # an earlier, interrupted run's
            (build_dir / "src").mkdir(exist_ok=True)
            sdist = sdist.rename(build_dir / "src" / sdist.name)
        # a link, not a move: vendor/llama.cpp/.git points into the sdist's .git, which gives the build its commit
        root.unlink(missing_ok=True)
        root.symlink_to(sdist.relative_to(build_dir) / "vendor" / "llama.cpp")
    # the converter's own requirements pin another torch: hold the one this python has, which the registry serves
    torch = metadata.version("torch").split("+")[0]
    constraints = build_dir / "constraints.txt"
    atomic_write_text(constraints, f"torch=={torch}\n")
    converter = ["numpy", "sentencepiece", "transformers", "protobuf", "safetensors", "tokenizers", f"torch=={torch}"]
    step("converter requirements", [*pip, "-c", constraints, *converter, "-e", root / "gguf-py"])
    cmake, root = venv / "bin" / "cmake", root.resolve()  # through the link, ninja never sees build.ninja clean
    env_path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"  # cmake finds ninja here
    out = root / BUILDS[isa]
    step("configure", [cmake, "-S", root, "-B", out, "-G", "Ninja", *CMAKE_FLAGS, *ISA_FLAGS[isa]], PATH=env_path)
    targets = ["--target", "llama-bench", "llama-quantize"]
    step(f"build (-j {jobs})", [cmake, "--build", out, "-j", str(jobs), *targets], PATH=env_path)
    print(f"built: {out / 'bin'}")


def step(what: str, cmd: list, **env: str) -> None:
    """Run one build step with its output shown; a failure exits naming the step."""
    print(f"== {what}", flush=True)
    done = subprocess.run([str(c) for c in cmd], env={**os.environ, **env})
    if done.returncode:
        sys.exit(f"llama.cpp build step {what!r} failed (exit {done.returncode}); fix it and re-run `build`")


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=None, help="the build folder (default: $LITLLM_LLAMA_CPP or "
                        "~/.cache/litllm-bench/llama.cpp)")  # fmt: skip
    common.add_argument("--isa", choices=list(BUILDS), default="native",
                        help="native: built for this CPU; avx2: for AVX2 + FMA + F16C alone")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", parents=[common], help="download and build llama.cpp and its converter into --dir")
    b.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    t = sub.add_parser("bench", parents=[common], help="convert HF_DIR, print decoding tokens/s per GGUF type")
    t.add_argument("hf_dir", type=Path, help="a transformers checkpoint folder (config.json, *.safetensors)")
    t.add_argument("--out", type=Path, default=None, help="where the GGUF files go (default: DIR/gguf)")
    t.add_argument("--types", nargs="+", choices=OUTTYPES, default=list(OUTTYPES))
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--prompt-tokens", type=int, default=32, help="llama-bench's prompt test (pp) length")
    t.add_argument("--new-tokens", type=int, default=128, help="llama-bench's decoding test (tg) length")
    t.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    build_dir = (args.dir or default_dir()).expanduser()
    if args.command == "build":
        return build(build_dir, args.jobs, args.isa)
    if not (args.hf_dir / "config.json").is_file():
        p.error(f"HF_DIR {args.hf_dir} has no config.json: pass a transformers checkpoint folder")
    if min(args.threads, args.prompt_tokens, args.new_tokens, args.repeats) < 1:
        p.error("--threads, --prompt-tokens, --new-tokens and --repeats must be >= 1")
    llama = find(build_dir, args.isa)
    if llama is None:
        sys.exit(why_not(build_dir, args.isa))
    out = args.out or build_dir / "gguf"
    knobs = (args.threads, args.prompt_tokens, args.new_tokens, args.repeats)
    rows = [(t, llama.bench_row(llama.convert(args.hf_dir, out, t), *knobs)) for t in args.types]
    commit = rows[0][1].get("build_commit", "?")
    print(f"llama.cpp {commit} ({SOURCE}) on {cpu_name()}: {args.hf_dir.name}, {args.threads} threads, batch 1,\n"
          f"decoding {args.new_tokens} tokens (llama-bench -p {args.prompt_tokens} -n {args.new_tokens}: tg), mean of "
          f"{args.repeats} runs\n")  # fmt: skip
    print("| type | tok/s | +- | GGUF MiB |\n| --- | ---: | ---: | ---: |")
    for outtype, r in rows:
        print(f"| {outtype} | {r['avg_ts']:.1f} | {r['stddev_ts']:.1f} | {r['model_size'] / 2**20:.0f} |")


if __name__ == "__main__":
    main()
