"""Everything a command-line run needs, validated before training: one line and exit 2 on
any bad flag or combination."""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np

import decjax
from decjax import workloads
from decjax._validation import available_memory
from decjax.cli.parser import PORTS

# Algorithms that average over all workers (an all-reduce) whatever the topology: run once.
IGNORE_TOPOLOGY = ("local_sgd", "diloco", "streaming_diloco")

DIRICHLET = ("dirichlet", "balanced_dirichlet")  # the partitions --alpha applies to


def every(args) -> int:
    """H, the local steps between averages of the periodic algorithms."""
    return decjax.algorithms.catalog.EVERY if args.every is None else args.every


def allreduce_label(args) -> str:
    """How an all-reduce algorithm's run is named in the summary (not by a graph)."""
    return f"all-reduce every {every(args)} steps"


def _check_out(out: Path) -> None:
    """The output folder can be created and written, checked before training."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ValueError(f"--out {out} is not a writable directory ({err.strerror})") from None


def _make_factory(args, key, classes: int = 10):
    """``topology -> tx`` for the chosen algorithm and fault options.

    The factory closes over the values that shape the run only (not over
    ``args``), so a checkpoint's identity does not change with, say,
    ``--no-progress``.
    """
    lr, algorithm, churn = args.lr, args.algorithm, args.node_failure > 0
    bfloat16 = args.precision == "bfloat16"
    if args.max_delay is not None and algorithm != "dasgd":
        raise ValueError("--max-delay applies to --algorithm dasgd only")
    max_delay = 4 if args.max_delay is None else args.max_delay
    slow = round(args.stragglers * args.workers)
    speeds = [1.0] * (args.workers - slow) + [0.5] * slow
    build = workloads.algorithm(algorithm, args.momentum, args.every)
    robust = robust_of(args, classes)
    if robust is not None:
        momentum = args.momentum

        def build(lr, topology):
            return decjax.dpsgd(lr, topology, momentum=momentum, robust=robust)

    def algorithm_on(topology):
        if algorithm == "dasgd":
            delays = decjax.algorithms.uniform_delay(max_delay)
            return decjax.dasgd(
                lr, topology, delays=delays, speeds=speeds if slow else None, key=key
            )
        tx = build(lr, topology)
        if isinstance(topology, decjax.topology.Faulty) and churn:
            tx = decjax.algorithms.node_churn(tx, topology)
        if slow:
            tx = decjax.algorithms.stragglers(tx, speeds, key=key)
        return tx

    def factory(topology):
        tx = algorithm_on(topology)
        if bfloat16:
            tx = decjax.algorithms.low_precision(tx, key=jax.random.fold_in(key, 1))
        return tx

    return factory


def privacy_of(args) -> decjax.privacy.Clip | None:
    """The run's DP-SGD option from --clip, --noise-multiplier, --delta and --epsilon-budget
    (``None`` without --clip; the others need it)."""
    given = [
        flag
        for flag, value in (
            ("--noise-multiplier", args.noise_multiplier),
            ("--delta", args.delta),
            ("--epsilon-budget", args.epsilon_budget),
        )
        if value is not None
    ]
    if args.clip is None:
        if given:
            raise ValueError(f"{given[0]} applies to DP-SGD: give --clip C too")
        return None
    if args.algorithm == "dasgd":
        raise ValueError("--clip applies to synchronous algorithms; not to --algorithm dasgd")
    return decjax.privacy.Clip(
        args.clip,
        noise_multiplier=args.noise_multiplier or 0.0,
        delta=1e-5 if args.delta is None else args.delta,
        epsilon_budget=args.epsilon_budget,
    )


def robust_of(args, classes: int = 10) -> decjax.byzantine.Robust | None:
    """The run's robust combine from --byzantine, --attack and --robust (``None`` without);
    ``classes``: the dataset's, which ``--attack label_flip`` flips within."""
    byz = decjax.byzantine
    if args.byzantine == 0 and args.attack is None and args.robust is None:
        return None
    if args.algorithm != "dpsgd":
        raise ValueError(
            "--byzantine, --attack and --robust apply to --algorithm dpsgd; not to "
            f"{args.algorithm}"
        )
    if args.attack is not None and args.byzantine == 0:
        raise ValueError("--attack needs --byzantine K > 0 workers to send it")
    if args.byzantine >= args.workers:
        raise ValueError(
            f"--byzantine {args.byzantine} leaves no honest worker of --workers {args.workers}"
        )
    tolerated = max(args.byzantine, 1)
    rules = {
        "trimmed_mean": lambda: byz.TrimmedMean(tolerated),
        "krum": lambda: byz.Krum(tolerated),
        "ios": lambda: byz.IOS(tolerated),
        "cs_plus": lambda: byz.CSPlus(tolerated),
        "paper_clipping": lambda: byz.PaperClipping(tolerated),
    }
    rule = rules.get(args.robust, byz.RULES[args.robust or "gossip"])()
    if args.byzantine == 0:
        return byz.Robust(rule)
    attacks = {
        "alie": lambda: byz.ALIE(byz.alie_z(args.workers, args.byzantine)),
        "label_flip": lambda: byz.LabelFlip(classes),
    }
    attack = attacks.get(args.attack, byz.ATTACKS[args.attack or "dissensus"])()
    workers = byz.place(args.workers, args.byzantine, seed=args.seed)
    return byz.Robust(rule, byz.Byzantine(workers, attack), seed=args.seed)


def time_model(args) -> decjax.timing.TimeModel | None:
    """The run's time model from the --bandwidth, --latency, --compute-time and --cluster
    flags; ``None`` when none is given."""
    timing = decjax.timing
    if args.message_scale is not None and args.bandwidth is None and args.cluster is None:
        raise ValueError(
            "--message-scale scales the bytes a link carries: give --bandwidth or --cluster too"
        )
    if args.bandwidth is None and args.latency is None and args.compute_time is None:
        if args.cluster is None:
            return None
    if args.cluster is not None and (args.bandwidth is not None or args.latency is not None):
        raise ValueError(f"--cluster {args.cluster} sets the links; drop --bandwidth and --latency")
    if args.cluster == "nvlink-nodes":
        if args.workers % 8:
            raise ValueError(
                f"--cluster nvlink-nodes needs a multiple of 8 workers, got {args.workers}"
            )
        network = timing.cluster(args.workers // 8, 8)
    elif args.cluster is not None:
        latency, gigabits = PORTS[args.cluster]
        network = timing.Network(latency, timing.gbps(gigabits), timing.gbps(gigabits))
    else:  # every worker behind a switch port of this bandwidth, shared by its messages
        bandwidth = float("inf") if args.bandwidth is None else timing.gbps(args.bandwidth)
        network = timing.Network(args.latency or 0.0, bandwidth, bandwidth)
    return timing.TimeModel(
        network, compute=args.compute_time or 0.0, message_scale=args.message_scale or 1.0
    )


def _topologies(args, key) -> list:
    if args.peers is not None:
        unused = [t for t in args.topologies if t not in decjax.topology.catalog.WITH_PEERS]
        if unused:
            raise ValueError(
                f"--peers applies to {', '.join(decjax.topology.catalog.WITH_PEERS)}; "
                f"not to {', '.join(unused)}"
            )
    if args.exchange is not None and "complete" not in args.topologies:
        raise ValueError(
            "--exchange applies to the complete graph's average; add complete to --topologies "
            "or drop --exchange"
        )
    topologies = [
        decjax.complete(args.workers, exchange=args.exchange)
        if name == "complete" and args.exchange is not None
        else decjax.topology.by_name(
            name, args.workers, key=jax.random.fold_in(key, i), peers=args.peers
        )
        for i, name in enumerate(args.topologies)
    ]
    if args.algorithm in decjax.algorithms.TREE_ONLY:
        trees = decjax.topology.catalog.TREES
        others = [name for name in args.topologies if name not in trees]
        if others:
            raise ValueError(
                f"{args.algorithm} relays over spanning trees; --topologies {','.join(others)} "
                f"is not one: choose from {', '.join(trees)}"
            )
    if args.algorithm in IGNORE_TOPOLOGY:
        if len(topologies) > 1:
            print(
                f"note: {args.algorithm} averages over all workers ({allreduce_label(args)}) "
                f"and ignores the topology: one run instead of {len(topologies)} identical ones"
            )
        topologies = [decjax.complete(args.workers)]  # the exact average an all-reduce computes
    if args.drop_prob > 0 or args.node_failure > 0:
        if args.algorithm == "dasgd":
            raise ValueError(
                "--drop-prob and --node-failure apply to gossip algorithms; DASGD models "
                "unreliable links with --max-delay"
            )
        topologies = [
            decjax.topology.with_faults(
                t,
                key=jax.random.fold_in(key, 3000 + i),
                link_failure=args.drop_prob,
                node_failure=args.node_failure,
                down_steps=20,
            )
            for i, t in enumerate(topologies)
        ]
    return topologies


def _supported(topologies: list, factory, algorithm: str) -> list:
    """The topologies the algorithm accepts (built once, concretely); a note for the others."""
    kept, reasons = [], []
    for topology in topologies:
        try:
            factory(topology)
        except ValueError as err:
            reasons.append(f"{topology.name}: {err}")
            continue
        kept.append(topology)
    if not kept:
        raise ValueError(f"--algorithm {algorithm} runs on none of the topologies ({reasons[0]})")
    for reason in reasons:
        print(f"note: skipping {reason}")
    if algorithm == "d2":
        print("note: d2 runs on the lazy graphs (I + W) / 2, where lambda_min(W) > -1/3 holds")
    return kept


def _check_combinations(args) -> None:
    """Flags that would be ignored in this combination: refused, never silently dropped."""
    if args.alpha is not None and args.partition not in DIRICHLET:
        raise ValueError(
            f"--alpha applies to --partition dirichlet or balanced_dirichlet; --partition "
            f"{args.partition} would ignore it"
        )
    if args.overwrite and args.checkpoint_dir is None:
        raise ValueError("--overwrite applies with --checkpoint-dir: there is nothing to overwrite")
    timed = any(
        getattr(args, flag) is not None
        for flag in ("bandwidth", "latency", "compute_time", "cluster")
    )
    if args.target_accuracy is not None and not timed:
        raise ValueError(
            "--target-accuracy reports time to accuracy: give a time flag too (--bandwidth, "
            "--latency, --compute-time or --cluster)"
        )
    if (args.drop_prob > 0 or args.node_failure > 0) and args.algorithm in IGNORE_TOPOLOGY:
        raise ValueError(
            f"--drop-prob and --node-failure fail links of the topology, which --algorithm "
            f"{args.algorithm} ignores ({allreduce_label(args)})"
        )


COPIES = 6  # the caller's params, the run's copy, gradients, new params, a temporary, momentum


def check_memory(args, model, dataset) -> None:
    """Refuse, before allocating, a run whose workers' params, minibatches and logits alone
    exceed 90 % of the device's memory (:data:`COPIES` copies of the params; the minibatch
    and its logits of every worker; the logits of the test set for every worker)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    per_worker = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    example = int(np.prod(dataset.x_train.shape[1:])) * 4
    # the logits (and their gradient) of every example: classes per label position
    logits = dataset.num_classes * int(np.prod(dataset.y_train.shape[1:])) * 4
    train = args.workers * (COPIES * per_worker + args.batch_size * (example + 3 * logits))
    evaluate = (args.workers + 1) * len(dataset.y_test) * logits  # every worker, the average
    need, have = train + evaluate, 0.9 * available_memory()
    if need > have:
        raise ValueError(
            f"{args.workers} workers need about {need / 2**30:.1f} GiB ({COPIES} copies of "
            f"{per_worker / 2**20:.3g} MiB of params each, minibatches of {args.batch_size} "
            f"examples, the logits of {dataset.num_classes} classes for them and the test set) "
            f"but the device has {have / 2**30:.1f} GiB to spare: lower --workers or "
            "--batch-size, or use a smaller model"
        )


def _prepare(parser, args):
    """Everything a run needs, validated; every bad combination exits 2 with one line."""
    if args.steps % args.eval_every and args.checkpoint_dir is not None:
        parser.error(  # otherwise the steps past the last whole record make a shorter one
            f"with --checkpoint-dir, --steps ({args.steps}) must be a multiple of --eval-every "
            f"({args.eval_every}): a checkpoint resumes at whole records"
        )
    try:
        _check_combinations(args)
    except ValueError as err:
        parser.error(str(err))
    if args.partition in DIRICHLET and args.alpha is None:
        args.alpha = 0.1
    if args.target_accuracy is None:
        args.target_accuracy = 0.8
    key = jax.random.key(args.seed)
    try:
        _check_out(args.out)
        if args.dataset == "text" and args.partition != "iid":
            raise ValueError("--dataset text needs --partition iid (its labels are sequences)")
        dataset = workloads.dataset(
            args.dataset, seed=args.seed, data_dir=args.data_dir, data_file=args.data_file
        )
        model = workloads.model(args.model, dataset, dataset_name=args.dataset)
        check_memory(args, model, dataset)
        if args.augment and dataset.x_train.ndim != 4:
            raise ValueError(f"--augment needs images; --dataset {args.dataset} has none")
        timing = time_model(args)
        privacy_of(args)
        factory = _make_factory(args, jax.random.fold_in(key, 4000), dataset.num_classes)
        topologies = _supported(_topologies(args, key), factory, args.algorithm)
        data = decjax.data.distribute(
            dataset,
            args.workers,
            args.partition,
            key=args.seed,
            alpha=args.alpha if args.partition in DIRICHLET else None,
        )
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    params = decjax.replicate(model.init(jax.random.fold_in(key, 1000)), args.workers)
    if args.precision == "bfloat16":  # the store, and inputs a bfloat16 model reads
        params = jax.tree.map(lambda a: a.astype(jax.numpy.bfloat16), params)
        if jax.numpy.issubdtype(data.x.dtype, jax.numpy.floating):
            data = data._replace(x=data.x.astype(jax.numpy.bfloat16))
    return key, dataset, factory, topologies, data, model, params, timing
