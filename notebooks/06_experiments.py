# %% [markdown]
# # 06 · Experiments: learning rate, batch size, ablations, the main experiment, the leaderboard
#
# Section 7 of the handout puts everything together: train many small models, each changing one
# thing, and keep a record of what happened. This notebook runs the handout's experiments in its
# order, one section per problem: the question, a cell that launches the sweep (`cs336 sweep`,
# in a process of its own, its output streamed into the cell), the figure redrawn from the
# results committed in `experiments/`, and the answer.
#
# Nothing here is exported: the sweep runner is `cs336_basics/sweep.py`, the reading and plotting
# of the results `cs336_basics/experiments.py` (both hand-written plumbing). From a terminal,
# `uv run cs336 sweep experiments/GROUP.toml` runs a sweep and `uv run cs336 experiments` redraws
# every figure and rewrites the experiment log, `experiments/LOG.md`.
#
# **Two scales.** At `cpu` scale the sweeps are the specs `experiments/*.toml`: the `cpu` preset's
# 3.3M-parameter model on the English stand-in (minutes a run on two cores). At `gpu` scale they
# are `experiments/gpu/*.toml`: the handout's own settings (`configs/tinystories.toml`,
# `configs/owt.toml`: 17M non-embedding parameters, 327M tokens, 30-40 minutes a run on an H100),
# with results in `experiments/gpu/` and figures in `figures/gpu/`. `SCALE = "auto"` picks `gpu`
# when PyTorch sees a CUDA device.

# %%
SCALE = "auto"  # cpu | gpu | auto (gpu when torch.cuda.is_available())

# %% [markdown]
# The launch cells train only when `CS336_LAUNCH=1` is in the environment (or `LAUNCH = True`
# below): a sweep takes an hour or more, so running the notebook top to bottom redraws the figures
# from the committed results and says what each launch cell would run, nothing more. A launch cell
# that is interrupted (the stop button) stops its runs with a checkpoint; running it again resumes
# them, and skips the runs whose results are already in `experiments/`.

# %%
import os
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, Markdown, display

from cs336_basics import experiments

SMOKE = os.environ.get("CS336_SMOKE") == "1"
LAUNCH = os.environ.get("CS336_LAUNCH") == "1"  # True: the launch cells train (hours)
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
if SCALE == "auto":
    SCALE = "gpu" if torch.cuda.is_available() else "cpu"
assert SCALE in ("cpu", "gpu"), f"SCALE = {SCALE!r}: choose cpu, gpu or auto"
EXPERIMENTS = ROOT / "experiments" / "gpu" if SCALE == "gpu" else ROOT / "experiments"
# figures of groups with results; in smoke mode a temporary folder, so that tests never touch figures/
FIGURES = Path(tempfile.mkdtemp(prefix="nb06-")) if SMOKE else ROOT / "figures" / ("gpu" if SCALE == "gpu" else "")
CARDS = Path(tempfile.mkdtemp(prefix="nb06-cards-"))  # "not run yet" cards: shown, never kept
print(f"scale {SCALE}: specs and results in {EXPERIMENTS.relative_to(ROOT)}/, figures in "
      f"{FIGURES if SMOKE else FIGURES.relative_to(ROOT)}/; launch cells {'train' if LAUNCH else 'only report'}")

# %% [markdown]
# ### Launching a sweep from a cell
#
# `launch(name)` runs `cs336 sweep` on `EXPERIMENTS/name.toml` in a subprocess and prints its lines
# as they come (a progress line per run every few seconds, the table of results at the end), so the
# kernel stays responsive and a crash of a run never takes the notebook down. Before it starts, it
# checks that the token files the runs read exist; if not, it stops with the command that makes
# them (`cs336 prepare`). On a CPU, the two runs of the main experiment go side by side.

# %%
import contextlib
import queue
import signal
import subprocess
import sys
import threading

from cs336_basics.sweep import SweepError, load_spec, plan_runs

PREPARE = {  # the data folders the presets read, and the command that makes each (from the repository root)
    "data/english": "uv run cs336 prepare cpu --data ../shared/data/english",
    "data/web": "uv run cs336 prepare cpu_web --data ../shared/data/web",
    "data/english_quarter": "uv run cs336 prepare cpu --data ../shared/data/english && "
                            "uv run python tools/subsample_tokens.py data/english data/english_quarter",
    "data/tinystories": "uv run cs336 prepare tinystories",
    "data/owt": "uv run cs336 prepare owt",
}


class MissingData(Exception):
    """The token files (or the validation text) a sweep needs are not there; the message says how to make them."""


def check_data(spec_path: Path, results: Path) -> tuple[int, str | None]:
    """How many runs of the spec are still to do, and what they would read that is not there (with the
    command that makes it; None when everything is)."""
    with contextlib.chdir(ROOT):  # spec paths are relative to the repository root
        spec = load_spec(spec_path)
        todo = [p for p in plan_runs(spec, SCALE == "gpu", results) if p.state not in ("done", "kept")]
        needed = {Path(p.config.data.train_tokens) for p in todo} | {Path(p.config.data.valid_tokens) for p in todo}
        # data/<name>/tokens/train.npy (a preset's) or data/<name>/train.npy (a spec's data folder) -> data/<name>
        folders = {(p.parent.parent if p.parent.name == "tokens" else p.parent).as_posix() for p in needed}
        if todo and spec.valid_text is not None:
            needed.add(spec.valid_text)
        absent = sorted(str(path) for path in needed if not path.is_file())
    if not absent:
        return len(todo), None
    make = "\n    ".join(PREPARE.get(folder, f"uv run cs336 prepare {spec.base.stem}") for folder in sorted(folders))
    return len(todo), (f"{spec_path.name}: {', '.join(absent)} missing. Make the data first, from {ROOT}:\n"
                       f"    {make}\n(or point `data` / `valid_text` in {spec_path.name} at a prepared folder)")


def stream(commands: dict[str, list[str]]) -> dict[str, int]:
    """Run the commands side by side, printing their output lines as they come ([name] first when several);
    returns their exit statuses. The stop button sends Ctrl-C to each (runs save a checkpoint and stop)."""
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1) for name, cmd in commands.items()}
    lines: queue.Queue = queue.Queue()

    def pump(name, proc):
        for line in proc.stdout:
            lines.put((name, line))
        lines.put((name, None))

    for name, proc in procs.items():
        threading.Thread(target=pump, args=(name, proc), daemon=True).start()
    open_streams = len(procs)
    while open_streams:
        try:
            name, line = lines.get()
        except KeyboardInterrupt:
            for proc in procs.values():
                proc.send_signal(signal.SIGINT)
            continue
        if line is None:
            open_streams -= 1
        else:
            print(f"[{name}] {line}" if len(procs) > 1 else line, end="", flush=True)
    return {name: proc.wait() for name, proc in procs.items()}


def launch(*names: str, results: Path | None = None, run: bool | None = None) -> None:
    """`cs336 sweep` on each spec EXPERIMENTS/<name>.toml (or a path to one), results into ``results``
    (default EXPERIMENTS); several specs side by side on a CPU. ``run`` (default LAUNCH) False: say what
    would run and whether its data is there, and train nothing."""
    results = EXPERIMENTS if results is None else Path(results)
    run = LAUNCH if run is None else run
    specs = [Path(n) if str(n).endswith(".toml") else EXPERIMENTS / f"{n}.toml" for n in names]
    problems = [f"no sweep spec {os.path.relpath(s, ROOT)}: write one (`uv run cs336 sweep --help` shows the "
                "format: a group, a base preset, [variants]) to launch it" for s in specs if not s.is_file()]
    commands = {}
    for spec in [s for s in specs if s.is_file()]:
        options = [] if results == ROOT / "experiments" else ["--experiments", os.path.relpath(results, ROOT)]
        if SCALE == "cpu" and len(specs) > 1:
            options += ["--jobs", "1"]  # the sweeps share the cores: one run each
        commands[spec.stem] = [sys.executable, "-m", "cs336_basics.cli", "sweep", str(spec), *options]
        try:
            todo, problem = check_data(spec, results)
        except SweepError as err:
            todo, problem = 0, str(err)
        print(f"$ uv run cs336 sweep {os.path.relpath(spec, ROOT)} {' '.join(options)}".rstrip()
              + f"   # {todo} run(s) to do")
        problems += [problem] if problem else []
    if not run:
        print("(not run: set CS336_LAUNCH=1, or LAUNCH = True above, to train)")
        print("\n".join(problems) or "data: in place")
        return
    if problems:
        raise MissingData("\n".join(problems))
    if SCALE == "cpu":
        statuses = stream(commands)
    else:  # one GPU: one sweep after the other
        statuses = {name: stream({name: cmd})[name] for name, cmd in commands.items()}
    failed = {name: rc for name, rc in statuses.items() if rc != 0}
    if failed:
        raise RuntimeError(f"sweep(s) {failed} did not finish (exit status 1: a run failed or was interrupted; "
                           "2: a bad spec or missing data; 130: stopped): see the output above")


def show(group: str, panels: tuple[str, ...] | None = None) -> None:
    """Redraw the figure of ``group`` from EXPERIMENTS and display it: into FIGURES/07_<group>.png when the
    group has results; a "not run yet" card, or some ``panels`` of the ablations, into a temporary folder."""
    ran = any(r.state != experiments.NOT_RUN for r in experiments.load_group(group, EXPERIMENTS).values())
    if panels:
        path = experiments.plot_ablations(EXPERIMENTS, CARDS / f"07_{group}_{'_'.join(panels)}.png", group, panels)
    else:
        path = experiments.plot_group(group, EXPERIMENTS, (FIGURES if ran else CARDS) / f"07_{group}.png")
    display(Image(filename=str(path)))


def table(group: str, runs=None, parameters: bool = False) -> None:
    """The group's results as a table (every variant of its specs; those not run yet say so)."""
    runs = list(experiments.group_results(group, EXPERIMENTS).values()) if runs is None else runs
    display(Markdown(experiments.format_table(runs, group, parameters)))


# %% [markdown]
# ### The launch path, on a tiny sweep
#
# In smoke mode (`CS336_SMOKE=1`, as under `pytest --nbval-lax`) the notebook runs one tiny sweep
# through `launch`: the smoke preset's model made smaller, 6 steps, random token ids in a temporary
# folder, one variant, and draws its learning-rate figure. It shows the whole path (spec, data
# check, subprocess, streamed output, results, figure) in seconds, most of them spent starting
# processes. (`tests/test_sweep.py` checks the rest: a diverging run, resuming, refusing.)

# %%
if SMOKE:
    import json

    import numpy as np

    tiny = Path(tempfile.mkdtemp(prefix="nb06-sweep-"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 5_000), ("valid", 1_000)):
        np.save(tiny / f"{split}.npy", rng.integers(0, 256, size=n, dtype=np.uint16))
    (tiny / "valid.txt").write_text("x" * 3_000)  # only its size counts (bits per byte)
    overrides = ["model.d_model=32", "model.num_layers=1", "model.d_ff=64", "model.num_heads=2",
                 "model.context_length=16", "data.batch_size=4", "run.eval_batches=1", "schedule.max_steps=6",
                 "run.log_every=2", "run.eval_every=6", "run.checkpoint_every=6"]
    tiny_spec = tiny / "learning_rate.toml"
    tiny_spec.write_text("\n".join([
        'group = "learning_rate"', f"base = {json.dumps(str(ROOT / 'configs' / 'smoke.toml'))}",
        f"data = {json.dumps(str(tiny))}", f"runs = {json.dumps(str(tiny / 'runs'))}", f"set = {json.dumps(overrides)}",
        'question = "Does the launch path work?"', "", "[variants]", 'lr_3e-3 = ["optim.lr=3e-3"]']) + "\n")
    launch(tiny_spec, results=tiny / "experiments", run=True)
    states = {n: r.state for n, r in experiments.load_group("learning_rate", tiny / "experiments").items()}
    assert states == {"lr_3e-3": "finished"}, states
    display(Image(filename=str(experiments.plot_learning_rate(tiny / "experiments", tiny / "07_tiny.png"))))

# %% [markdown]
# ## experiment_log: keeping a record
#
# > Create experiment tracking infrastructure that allows you to track your experiments and loss
# > curves with respect to gradient steps and wallclock time. Deliverable: the logging code and an
# > experiment log (a document of all the things you tried).
#
# Every run of `cs336 train` appends a JSON line to its `metrics.jsonl` every `log_every` steps
# (`step`, `tokens`, `wallclock_s`, `train/loss`, `lr`, `grad_norm`, `tok_per_s`, `mfu`) and every
# `eval_every` steps the validation loss (`val/loss`, and `val/ema_loss` of the weight average), so
# each curve is known against steps, tokens and wall-clock. A sweep (`cs336 sweep SPEC.toml`) trains
# the variants of one experiment and copies each run's small files to
# `experiments/GROUP/VARIANT/`: the config, the metrics, `eval.json` (loss and bits per byte on
# the whole validation file), `env.json` (commit, machine, versions) and `status.json` (finished,
# diverged or failed). Those are committed; the figures and the log are drawn from them.
#
# The log is `experiments/LOG.md`: per group, the question (the spec's `question`), the command,
# a table of every run (diverged and failed ones included), the figure, and the conclusion (the
# spec's `conclusion`). The next cell redraws all of it, as `uv run cs336 experiments` does.

# %%
drawn = experiments.draw_figures(EXPERIMENTS, FIGURES)
log = experiments.write_log(EXPERIMENTS, (FIGURES if SMOKE else EXPERIMENTS) / "LOG.md", FIGURES)
for group, path in drawn.items():
    runs = experiments.group_results(group, EXPERIMENTS).values()
    done = sum(r.state != experiments.NOT_RUN for r in runs)
    print(f"{group:16} {done:2} of {len(runs):2} variants run   figure: {path.name if path else 'none yet'}")
print("log:", log if SMOKE else log.relative_to(ROOT))

# %% [markdown]
# ## learning_rate: tune the learning rate
#
# > (a) Perform a hyperparameter sweep over the learning rates and report the final losses (or note
# > divergence if the optimizer diverges). (b) Folk wisdom is that the best learning rate is "at the
# > edge of stability". Investigate how the point at which learning rates diverge is related to
# > your best learning rate.
#
# At cpu scale: the `cpu` preset's recipe for 1,200 steps (2.5M tokens, a quarter of the preset's
# run) at nine base rates from 1e-3 to 1, everything else fixed. At gpu scale: the TinyStories
# preset at eight rates from 1e-3 to 0.1.

# %%
# NBVAL_SKIP
launch("learning_rate")

# %%
show("learning_rate")
table("learning_rate")

# %% [markdown]
# **Answer.** (a) The final loss is a flat valley in log(lr). 2e-3 to 1e-2 end within 0.05 nats of the
# best rate, 5e-3 (4.309 nats/token, 1.729 bits/byte); the seed spread is 0.018. The search was a
# log grid (steps of 2-2.5x over three decades) at a quarter of the preset's budget, at equal
# tokens; the preset's earlier 400 s tuning had refined the best rate. (b) Going up from the best
# rate, training degrades quickly. At 2e-2 it is noisy and 0.5 nats behind. At 5e-2 the loss falls
# to 5.6 by step 250 and then climbs back: the run diverges. 1e-1 and 3e-1 never get below 6.5, and
# at 1 the loss explodes into the hundreds (gradient norms above 10^5). So the best rate sits about
# 4x below the first rate whose curve degrades, and 10x below the first that diverges: near the
# edge of stability, on its stable side.

# %% [markdown]
# ## batch_size_experiment: batch size variations
#
# > Vary your batch size all the way from 1 to the GPU memory limit. Try at least a few batch sizes
# > in between, including typical sizes like 64 and 128. The learning rates should be optimized
# > again if necessary. Discuss your findings on batch sizes and their impacts on training.
#
# Every run gets the same wall-clock budget (`schedule.max_seconds`; the warm-up and the cosine
# follow the clock), so the question becomes which batch size learns the most in that time; most
# sizes get two learning rates around the square-root rule, and the better one is drawn bold.

# %%
# NBVAL_SKIP
launch("batch_size")

# %%
show("batch_size")
table("batch_size")

# %% [markdown]
# **Answer.** At equal wall-clock on a CPU, small batches win. One thread's throughput grows only
# 1.4x from batch 1 to batch 128 (1.2 M to 1.6-1.8 M tokens in 5 minutes), so equal time is
# nearly equal tokens, and the number of updates decides: batch 1 made 4,630 updates and reached
# the best loss (4.498), batch 128 made 50 (5.259 at best). Per token, too, the small batches learn
# more at this early stage. The best learning rate grows from batch 1 (2e-3) to 8-32 (5e-3), but
# the largest batches, with only 50-110 updates, did best at the lowest rate tried (5e-3); a lower
# one might do better still. On a GPU, throughput grows with the batch until the device is full,
# so there the trade-off moves to far larger batches.
#
# (The handout's `generate` problem, text from the trained model, is answered in notebook
# `05_sampling` and in the writeup.)

# %% [markdown]
# ## layer_norm_ablation: remove RMSNorm and train
#
# > Remove all of the RMSNorms from your Transformer and train. What happens at the previous optimal
# > learning rate? Can you get stability by using a lower learning rate? Deliverable: a learning
# > curve without RMSNorm, and one for the best learning rate; a few sentences on the impact of
# > RMSNorm.
#
# The four ablations of section 7.3 are one sweep, `ablations`: each changes one switch of the
# model (`model.norm`, `model.positional`, `model.ffn`), at the baseline's recipe. The baseline is
# the learning-rate sweep's run with the same settings, and a second seed of it
# (`baseline_seed1`) shows how much two identical runs differ: the grey band in the figures.
# A difference smaller than that band is noise.

# %%
# NBVAL_SKIP
launch("ablations")

# %% [markdown]
# Each ablation's figure shows one panel of `figures/07_ablations.png` (the cell of the experiment
# log above draws the four together): the ablation's runs in colour, the baselines in grey.

# %%
show("ablations", panels=("layer_norm",))
baselines = experiments.ablation_baselines(EXPERIMENTS)
ablation_runs = experiments.group_results("ablations", EXPERIMENTS)


def ablation_table(panel: str) -> None:
    """The baselines and the runs of one ablation, with their parameter counts."""
    runs = [r for r in ablation_runs.values() if r.config and experiments.ablation_panel(r) == panel]
    table("ablations", baselines + runs, parameters=True)


ablation_table("layer_norm")

# %% [markdown]
# **Answer.** Without RMSNorm, the previous best rate (5e-3) diverges: the loss passes 1,600 by
# step 200 and the weights are non-finite at step 282. A 5x lower rate (1e-3) is stable but ends at
# 4.555, behind the normed model at that rate (4.445) and at its best (4.309). Gradient norms reach
# 86 before clipping, against under 1 with the norms. RMSNorm is what lets the model take large
# steps: it fixes the scale of every sublayer's input and of the logits.

# %% [markdown]
# ## pre_norm_ablation: post-norm instead of pre-norm
#
# > Modify your pre-norm Transformer implementation into a post-norm one. Train with the post-norm
# > model and see what happens. Deliverable: a learning curve for a post-norm transformer, compared
# > to the pre-norm one.
#
# Pre-norm: $z = x + \mathrm{MHA}(\mathrm{RMSNorm}(x))$, $y = z + \mathrm{FFN}(\mathrm{RMSNorm}(z))$;
# post-norm: $z = \mathrm{RMSNorm}(x + \mathrm{MHA}(x))$, $y = \mathrm{RMSNorm}(z + \mathrm{FFN}(z))$
# (`model.norm = "post"`; it was launched with the other ablations above).

# %%
show("ablations", panels=("pre_norm",))
ablation_table("pre_norm")

# %% [markdown]
# **Answer.** Post-norm does not train at the pre-norm model's best rate, 5e-3: it sits above 6.6
# and ends at 6.767. At 1e-3 it ends at 4.451, level with pre-norm at that rate (4.445). So the
# norm's place decides how high the learning rate can go. With post-norm every gradient passes
# through the norms of all later layers; pre-norm keeps an identity path from the loss to every
# layer.

# %% [markdown]
# ## no_pos_emb: NoPE
#
# > Modify your Transformer implementation with RoPE to remove the position embedding information
# > entirely, and see what happens. Deliverable: a learning curve comparing RoPE and NoPE.
#
# With a causal mask a decoder can still infer positions (a token at position $i$ attends to $i+1$
# keys), so NoPE is expected to learn, only less well (`model.positional = "none"`).

# %%
show("ablations", panels=("no_pos_emb",))
ablation_table("no_pos_emb")

# %% [markdown]
# **Answer.** NoPE keeps up for the first 300 steps (4.996, as good as the baseline's seeds) and
# then falls behind, ending at 4.624 against 4.309. That gap is 0.31 nats, 17 times the seed
# spread. The causal mask leaks enough about position for the early, bag-of-words part of
# learning; predictions that need word order come later and less well without RoPE.

# %% [markdown]
# ## swiglu_ablation: SwiGLU vs. SiLU
#
# > Compare SwiGLU feed-forward networks with feed-forward networks using SiLU activations but no
# > gating, $\mathrm{FFN}_{\mathrm{SiLU}}(x) = W_2\,\mathrm{SiLU}(W_1 x)$, with approximately matched
# > parameter counts ($d_{ff} = 4\,d_{model}$). Deliverable: a learning curve comparing the two, and
# > a few sentences on the findings.
#
# At cpu scale $d_{model} = 192$: SwiGLU's three matrices at $d_{ff} = 512$ and SiLU's two at
# $d_{ff} = 768 = 4 \cdot 192$ hold exactly the same 294,912 parameters a layer (the table's
# parameter column).

# %%
show("ablations", panels=("swiglu",))
ablation_table("swiglu")

# %% [markdown]
# **Answer.** The SiLU FFN at d_ff = 768 has exactly SwiGLU's parameter count (294,912 per layer).
# It ends at 4.429 against 4.309 and 4.327 for SwiGLU's two seeds. The gate is worth about 0.1 nats
# here, five times the seed spread, for no extra parameters.

# %% [markdown]
# ## main_experiment: experiment on OpenWebText
#
# > Train your language model on OpenWebText with the same model architecture and total training
# > iterations as TinyStories. How well does this model do? Deliverable: a learning curve on
# > OpenWebText; describe the difference in losses from TinyStories: how should we interpret these
# > losses?
#
# Two specs of one group: `main_experiment` (the web stand-in, `web`) and
# `main_experiment_english` (`english`), run side by side on a CPU so that their wall-clocks
# compare. Their tokenizers differ (vocabularies and bytes per token), so their losses per token
# do not compare; per byte of text they do: bits per byte = loss / ln 2 / (bytes per token), with
# the bytes per token of each validation file (from its `eval.json`).

# %%
# NBVAL_SKIP
launch("main_experiment", "main_experiment_english")

# %%
show("main_experiment")
table("main_experiment")

# %% [markdown]
# **Answer.** The same model, recipe and 4,500 steps score 1.788 bits per byte on the web stand-in
# and 1.551 on the English one. Per token the web looks better (3.07 against 3.87 nats), but only
# because its tokens are shorter (2.48 against 3.60 bytes). Per byte, the varied e-mail corpus is
# harder: headers, HTML, URLs, numbers and spam of every kind. The web model's samples
# (`experiments/main_experiment/web/samples.txt`, quoted in the writeup) have the corpus's form:
# quoted-printable HTML, and mailing-list footers copied word for word. They have no sense.

# %% [markdown]
# ## leaderboard: your own modification
#
# > Train a model under the leaderboard rules (at most 1.5 hours on an H100, only the OpenWebText
# > training data) with the goal of minimizing the validation loss. Deliverable: the final
# > validation loss, a learning curve whose wall-clock axis stays under 1.5 hours, and a
# > description of what you did.
#
# At gpu scale a leaderboard run is a sweep like the others: `experiments/gpu/leaderboard.toml`
# trains `configs/leaderboard.toml` (the main experiment's model and optimizer on the clock:
# `schedule.max_seconds = 5400`), one variant per idea. At cpu scale the same question is asked of
# the web stand-in and the `cpu` preset's train time (855 s on 2 cores), in three steps:
#
# 1. **Screening** (`leaderboard_screen`): 400 s runs, one thread each, two side by side: the
#    learning rate of the `cpu` recipe retuned for the web data in float32, then bf16 autocast,
#    then one modification at a time on top of it (QK-norm, a ReLU² FFN, a logit soft-cap,
#    zero-initialised output projections, a wider model, value embeddings, a token shift). What
#    wins at equal time is kept.
# 2. **The head-to-head** (`leaderboard`): the recipe with the winners
#    (`configs/cpu_leaderboard.toml`) against the `cpu` recipe, each at its two best rates, for the
#    full 855 s, every leaderboard run side by side with a `cpu`-recipe run.
# 3. **English** (`leaderboard_english`): the same recipe on the English stand-in, trained as the
#    `cpu` preset is (two threads, alone on the machine), against the preset itself on the same
#    clock in the same session; the goal is at most 1.50 bits per byte. The English documents are
#    long (speeches, Brown texts, plays), so a screen (`leaderboard_english_screen`, 400 s, one
#    thread each) asks whether a longer context pays there, at the same tokens per step; later
#    sessions screen a shorter context, batch 4 and four more switches there (U-net skips, a
#    token shift, canon mixes, a bigram table).

# %%
# NBVAL_SKIP
if SCALE == "cpu":
    launch("leaderboard_screen")

# %%
if SCALE == "cpu":
    show("leaderboard_screen")
    table("leaderboard_screen")

# %%
# NBVAL_SKIP
launch("leaderboard")

# %%
# NBVAL_SKIP
if SCALE == "cpu":
    launch("leaderboard_english")  # two threads: alone on the machine, after the others

# %%
show("leaderboard")
table("leaderboard")

# %%
show("leaderboard_english")
table("leaderboard_english")

# %%
# NBVAL_SKIP
if SCALE == "cpu":
    launch("leaderboard_english_screen")

# %%
if SCALE == "cpu":
    show("leaderboard_english_screen")
    table("leaderboard_english_screen")

# %% [markdown]
# A sixth session's bigram table gained early and lost most of it in the second epoch, which a
# 400 s screen never reaches; `leaderboard_english_epochs` screens on a quarter of the English
# tokens, which 400 s read about 1.6 times, as the full run reads all of them. A seventh session
# screened hashed triples (`model.trigrams`), dropout (`model.dropout`) and a growing context
# (`schedule.short_context_until`) there.

# %%
# NBVAL_SKIP
if SCALE == "cpu":
    launch("leaderboard_english_epochs")

# %%
if SCALE == "cpu":
    show("leaderboard_english_epochs")
    table("leaderboard_english_epochs")

# %% [markdown]
# **Answer.** At cpu scale, half done. On the web stand-in, in the `cpu` preset's 855 s at one thread
# per run, side by side, the leaderboard recipe as it is now (`configs/cpu_leaderboard.toml`: bf16
# autocast, zero-initialised output projections, value embeddings, a token shift, a bigram table, lr
# 3.5e-3) scores 1.733 bits per byte against the `cpu` recipe's 1.991 at its retuned rate 2.5e-3 in
# the same session (earlier sessions: 1.822 against 2.000 before the token shift and the table; at
# two threads, each run alone, with the token shift: 1.718 against 1.877). Much of the gain is bf16's
# extra steps. The screening kept bf16, the zero-initialised projections (0.02 better, two seeds), a
# lower rate, value embeddings (0.011 better at equal time despite 12% fewer steps), the token shift
# (each embedding plus a gated copy of the previous one: 0.012 better over two seeds on web, 0.013
# on English) and the bigram table (a row per hashed pair of previous token and token, added to the
# embedding, with a weight decay of its own so that it does not memorise the second epoch: 0.089
# better on web, 0.020 on English). QK-norm, ReLU², the soft-cap, a wider model, U-net skips and
# canon mixes lost. On the English stand-in at two threads the recipe scores 1.511 at the English
# data's rate 5e-3 (1.531 before the bigram table; the preset itself: 1.594 on the same clock,
# earlier), but misses the goal of 1.50, which was set against the 1.548 the preset made on a
# machine with faster float32 matmuls (run again in a later session: 1.514). A higher rate, more
# weight decay, three layers, a longer or shorter context, batch 4, hashed triples in the bigram table,
# dropout and a context grown from 128 to 256 half-way did not close the gap; given 980 s instead of
# 855 (14% more steps) it scores 1.505, so faster steps alone would not either. No GPU run: no GPU was available (writeup §7).
#
# ## What this leaves
#
# The results of every sweep are in `experiments/` (and `experiments/gpu/` at gpu scale), the
# figures in `figures/07_*.png`, and the log in `experiments/LOG.md`; `uv run cs336 experiments`
# redraws them from the committed files. The writeup answers each problem from them.
