"""Data parallelism: many replicas compute one step, and the trainer never knows.

Every replica holds the whole model. Each step's batch is cut into shares,
one per replica; each replica runs forward and backward on its share, and the
gradients are then *summed* (an all-reduce). Because every share's loss is
weighted by its fraction of the batch, the sum is exactly the gradient of the
whole batch's mean loss: the same step one big machine would have taken::

    grad L(batch) = grad sum_r (n_r / n) L(share_r) = sum_r (n_r / n) grad L(share_r)

:class:`DataParallel` wraps a model and offers the model's own interface
(``loss``, ``backward_loss``, ``zero_grad``, ``named_parameters``,
``train``/``eval``, ``state_dict``), so :class:`~minitx.train.trainer.Trainer`
trains it like any other model. Replicas come in two kinds, and can be mixed:

* **Threads** in one process (``threads=2``). The replicas *share* the
  parameter arrays (weights are read by all and written only by the
  optimizer) but own their gradients and backward caches. NumPy releases the
  GIL inside its kernels, so two threads keep two cores busy; BLAS is held at
  one thread per replica (``threadpoolctl``), or the replicas' BLAS threads
  would fight over the same cores.
* **Processes**, one per MPI rank (``mpiexec -n 2 minitx train ...``), each
  with its own copy of the weights, on one machine or many. Every rank draws
  the same global batch (the same seed) and keeps its own rows; the
  gradients are summed with ``Allreduce``. Rank 0 alone writes checkpoints,
  metrics and plots, and prints.

The wire between processes is a :class:`Communicator`: a handful of
collective operations (sum in place, broadcast, all-gather), with
:class:`SingleProcess` and :class:`MPICommunicator` (``mpi4py``) behind it.
A GPU build can plug in NCCL (``cupy.cuda.nccl``) the same way.

One subtlety: "its fraction of the batch" counts what the loss averages
over. A model's mean loss divides by its number of *counted targets*, and
rows need not have the same number: padding and a masked prompt are
targets of -100, which count for nothing. With ``N_r`` counted targets in
share ``r`` and ``N`` in the whole batch::

    L(batch) = (1/N) sum_r sum_{t in r} nll_t = sum_r (N_r / N) L(share_r)

so a share's weight is ``N_r / N``, which the wrapper asks the model for
(``model.count_targets(*batch)``, which every minitx model with a ``loss``
has); a model without it is weighted by rows. Either way the step equals
the one-process step up to float rounding (tests check threads and 2
ranks against 1 process, with masked rows). PyTorch's DDP averages the
per-share means instead, which differs whenever the counts do.
"""
from __future__ import annotations

import copy
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import device_of

# --------------------------------------------------------------------------
# Communicators: the few collective operations data parallelism needs
# --------------------------------------------------------------------------
#: Environment variables that MPI launchers set in every process they start.
MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK")


class Communicator:
    """Collectives over ``size`` processes, of which this one is ``rank``.

    ``local_size`` is how many of them share this machine (they share its
    cores, so each should use ``cores / local_size`` BLAS threads).
    """

    rank: int = 0
    size: int = 1
    local_size: int = 1

    def allreduce_sum(self, buf: np.ndarray) -> None:
        """Replace ``buf`` by the element-wise sum of every process's ``buf``."""
        raise NotImplementedError

    def broadcast(self, buf: np.ndarray, root: int = 0) -> None:
        """Overwrite ``buf`` with process ``root``'s ``buf``."""
        raise NotImplementedError

    def allgather_json(self, obj) -> list:
        """Every process's ``obj`` (anything JSON-able), in rank order, on every process."""
        raise NotImplementedError

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is True on any (one small all-reduce)."""
        buf = np.array([1.0 if flag else 0.0])
        self.allreduce_sum(buf)
        return bool(buf[0] > 0)


class SingleProcess(Communicator):
    """The trivial communicator: one process, every collective is the identity."""

    def allreduce_sum(self, buf) -> None:
        pass

    def broadcast(self, buf, root: int = 0) -> None:
        pass

    def allgather_json(self, obj) -> list:
        return [obj]

    def any(self, flag: bool) -> bool:
        return bool(flag)


class MPICommunicator(Communicator):
    """MPI through ``mpi4py`` (``pip install minitx[mpi]``), one process per rank.

    Only buffer-based calls are used (``Allreduce``, ``Bcast``,
    ``Allgatherv`` on NumPy arrays): mpi4py's object methods would pickle,
    and minitx loads no pickle, so JSON travels as UTF-8 bytes.
    """

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI  # noqa: PLC0415 - optional extra
        except ImportError:
            raise ValueError("MPI: mpi4py is not installed; expected pip install minitx[mpi] "
                             "(mpi4py and the mpich wheel)") from None
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
        self.local_size = local.Get_size()
        local.Free()

    def allreduce_sum(self, buf) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def broadcast(self, buf, root: int = 0) -> None:
        self.comm.Bcast(buf, root=root)

    def allgather_json(self, obj) -> list:
        mine = np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)
        counts = np.zeros(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([mine.size], dtype=np.int64), counts)
        out = np.empty(int(counts.sum()), dtype=np.uint8)
        self.comm.Allgatherv(mine, [out, counts.tolist()])
        ends = np.cumsum(counts)
        return [json.loads(out[e - n:e].tobytes().decode("utf-8")) for e, n in zip(ends.tolist(), counts.tolist())]


def launched_by_mpi() -> bool:
    """True when this process was started by ``mpiexec``/``mpirun`` (it sets one of :data:`MPI_ENV`)."""
    return any(name in os.environ for name in MPI_ENV)


def default_communicator() -> Communicator:
    """:class:`MPICommunicator` under ``mpiexec`` with more than one rank, else :class:`SingleProcess`."""
    if not launched_by_mpi():
        return SingleProcess()
    comm = MPICommunicator()
    return comm if comm.size > 1 else SingleProcess()


# --------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------
_BLAS = {"controller": None, "holders": [], "original": None}
_BLAS_LOCK = threading.Lock()


class _BlasHold:
    """One holder's claim on the process-wide BLAS thread limit; see :func:`limit_blas_threads`."""

    def __init__(self, n: int):
        self.n = n

    def restore_original_limits(self) -> None:
        with _BLAS_LOCK:
            if self not in _BLAS["holders"]:
                return
            _BLAS["holders"].remove(self)
            if _BLAS["holders"]:  # the limit of whoever still holds one
                _BLAS["controller"].limit(limits=min(h.n for h in _BLAS["holders"]), user_api="blas")
            else:  # the last one out restores what the process had before the first came in
                _BLAS["original"].restore_original_limits()
                _BLAS["original"] = None


def limit_blas_threads(n: int) -> _BlasHold:
    """Hold BLAS at ``n`` threads until ``.restore_original_limits()`` is called on the result.

    The limit is process-wide, and several wrappers may hold one at a time
    (two trainers in one test, say), released in any order: the holders are
    counted, the smallest limit applies, and the last release restores the
    process's own setting. The controller (which scans the loaded libraries,
    about a millisecond) is built when the first holder arrives, so a BLAS
    library loaded since the last release (SciPy's, which transformers pulls
    in) is limited too.
    """
    from threadpoolctl import ThreadpoolController  # noqa: PLC0415 - a core dependency, imported when needed

    hold = _BlasHold(max(1, int(n)))
    with _BLAS_LOCK:
        if _BLAS["controller"] is None or not _BLAS["holders"]:
            _BLAS["controller"] = ThreadpoolController()
        limiter = _BLAS["controller"].limit(limits=min([hold.n] + [h.n for h in _BLAS["holders"]]), user_api="blas")
        if not _BLAS["holders"]:
            _BLAS["original"] = limiter  # remembers the limits from before any holder
        _BLAS["holders"].append(hold)
    return hold


# --------------------------------------------------------------------------
# Replicas
# --------------------------------------------------------------------------
def make_replica(model, seed):
    """A copy of ``model`` that *shares* its parameter arrays but owns gradients, caches and RNG.

    The copy is a deep copy in which every ``Parameter.data`` array is mapped
    to itself (so an optimizer step on ``model`` is seen by the replica) and
    everything else is duplicated: gradients (each thread writes its own),
    the caches a backward pass reads, and the model's random generator,
    which is then re-seeded with ``seed`` so that the replica's dropout masks
    are its own stream.
    """
    memo = {id(p.data): p.data for p in model.parameters()}
    replica = copy.deepcopy(model, memo)
    for p in replica.parameters():
        p.grad[...] = 0
    rng = getattr(replica, "rng", None)
    if isinstance(rng, np.random.Generator):
        rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state  # the one generator all its layers share
    return replica


def _share_rows(n: int, parts: int) -> list[slice]:
    """``n`` rows cut into ``parts`` contiguous slices of sizes differing by at most one."""
    return [slice(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def _deal(items: list, n: int) -> list[list]:
    """Deal ``(parameter, ...)`` tuples into ``n`` lists of about equal total size (largest first)."""
    shares, sizes = [[] for _ in range(n)], [0] * n
    for item in sorted(items, key=lambda it: -it[0].data.size):
        i = sizes.index(min(sizes))  # the lightest share so far
        shares[i].append(item)
        sizes[i] += item[0].data.size
    return shares


# --------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------
class DataParallel:
    """``model`` computed by ``threads`` replicas in this process times ``comm.size`` processes.

    Use it where the model goes::

        model = DataParallel(GPT(config, seed=1), threads=2)   # or comm=MPICommunicator()
        Trainer(model, data, train_config, "out").train()

    ``loss(*batch)`` keeps this process's rows of the global batch (rank
    ``r`` of ``R`` takes the ``r``-th of ``R`` contiguous slices), splits
    them over the threads, and returns the mean loss of the *whole* batch.
    ``backward_loss(scale)`` runs every replica's backward and leaves the
    summed gradient in the wrapped model's ``Parameter.grad`` on every
    process. Other attributes (``config``, ``forward``, ``generate`` ...)
    are the wrapped model's.
    """

    def __init__(self, model, *, threads: int = 1, comm: Communicator | None = None, seed=0):
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"DataParallel threads: got {threads!r}, expected a positive integer")
        self.module = model
        self.comm = comm if comm is not None else SingleProcess()
        params = model.parameters()
        if threads > 1 and params and device_of(params[0].data) != "cpu":
            raise ValueError(f"DataParallel threads: got {threads} with the model on the GPU, expected 1 "
                             "(data-parallel threads are a CPU feature)")
        self.threads = threads
        if self.comm.size > 1:
            for p in params:  # start from rank 0's weights, whatever each rank's seed drew
                self.comm.broadcast(p.data)
            rng = getattr(model, "rng", None)
            if self.comm.rank > 0 and isinstance(rng, np.random.Generator):  # each rank its own dropout masks
                rng.bit_generator.state = np.random.default_rng([seed, 3, self.comm.rank, 0]).bit_generator.state
        self.replicas = [model] + [make_replica(model, [seed, 3, self.comm.rank, i]) for i in range(1, threads)]
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self._reduce_shares = _deal(list(zip(*[r.parameters() for r in self.replicas])), threads)
        self._flat = np.empty(sum(p.data.size for p in params), dtype=params[0].data.dtype) \
            if self.comm.size > 1 and params else None
        cores = os.cpu_count() or 1
        blas = 1 if threads > 1 else max(1, cores // self.comm.local_size)
        self._blas = limit_blas_threads(blas) if (threads > 1 or self.comm.size > 1) else None
        self._fresh = True  # no gradient accumulated since zero_grad
        self._shares: list[float] = []

    # ---- what a process is ----------------------------------------------------
    @property
    def is_main_process(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.comm.rank == 0

    def any_rank(self, flag: bool) -> bool:
        """``flag`` agreed by every process (True if any has it), e.g. "Ctrl-C was pressed"."""
        return self.comm.any(flag)

    # ---- the model interface ----------------------------------------------------
    def _my_rows(self, n: int) -> list[slice]:
        if n < self.threads * self.comm.size:
            raise ValueError(f"batch: got {n} rows, expected at least one per replica "
                             f"({self.threads} threads x {self.comm.size} processes)")
        mine = _share_rows(n, self.comm.size)[self.comm.rank]
        return [slice(mine.start + s.start, mine.start + s.stop) for s in _share_rows(mine.stop - mine.start,
                                                                                        self.threads)]

    def loss(self, *batch, **kwargs):
        """Mean loss of the whole global batch; returns ``(loss, None)`` (the logits stay per replica)."""
        rows = self._my_rows(len(batch[0]))
        self._shares = self._weights(batch, rows)

        def work(replica, rows_):
            with np.errstate(over="ignore", invalid="ignore"):  # per thread: NumPy's error state is thread-local
                return replica.loss(*(a[rows_] for a in batch), **kwargs)[0]

        if self._pool is None:
            losses = [work(self.module, rows[0])]
        else:
            losses = list(self._pool.map(work, self.replicas, rows))
        local = np.array([sum(l * s for l, s in zip(losses, self._shares))], dtype=np.float64)
        self.comm.allreduce_sum(local)
        return float(local[0]), None

    def _weights(self, batch: tuple, rows: list[slice]) -> list[float]:
        """Each of this process's shares' weight in the global batch's mean loss: ``N_r / N`` (module docs).

        Every process holds the whole global batch, so ``N`` is counted here
        without a collective. A batch with nothing counted (all padding) has
        loss 0 whatever the weights; it is weighted by rows.
        """
        count = getattr(self.module, "count_targets", None)
        total = count(*batch) if count is not None else 0
        if total > 0:
            return [count(*(a[r] for a in batch)) / total for r in rows]
        n = len(batch[0])
        return [(r.stop - r.start) / n for r in rows]

    def backward_loss(self, scale: float = 1.0) -> None:
        """Every replica's backward (weighted by its share), then the gradients summed everywhere."""
        stash = None
        if self.comm.size > 1 and not self._fresh:  # keep earlier micro-batches out of this all-reduce
            stash = [p.grad.copy() for p in self.module.parameters()]
            self.module.zero_grad()

        def work(replica, share):
            if replica is not self.module:
                replica.zero_grad()  # this replica's gradients hold only this micro-batch
            with np.errstate(over="ignore", invalid="ignore"):
                replica.backward_loss(scale * share)

        if self._pool is None:
            work(self.module, self._shares[0])
        else:
            list(self._pool.map(work, self.replicas, self._shares))

            def reduce(share):  # sum the replicas' gradients into the wrapped model's, a share of the parameters
                for p, *others in share:
                    if p.requires_grad:  # a frozen parameter has no gradient to sum
                        for q in others:
                            p.grad += q.grad

            list(self._pool.map(reduce, self._reduce_shares))
        if self.comm.size > 1:
            self._allreduce_grads()
            if stash is not None:
                for p, s in zip(self.module.parameters(), stash):
                    p.grad += s
        self._fresh = False

    def _allreduce_grads(self) -> None:
        """One ``Allreduce`` of every trainable gradient, packed into one flat buffer (frozen ones stay home)."""
        params, offset = [p for p in self.module.parameters() if p.requires_grad], 0
        for p in params:
            self._flat[offset:offset + p.grad.size] = p.grad.ravel()
            offset += p.grad.size
        self.comm.allreduce_sum(self._flat[:offset])  # a contiguous view: only what was packed travels
        offset = 0
        for p in params:
            p.grad[...] = self._flat[offset:offset + p.grad.size].reshape(p.grad.shape)
            offset += p.grad.size

    def zero_grad(self) -> None:
        for replica in self.replicas:
            replica.zero_grad()
        self._fresh = True

    def named_parameters(self, prefix: str = ""):
        return self.module.named_parameters(prefix)

    def parameters(self):
        return self.module.parameters()

    def train(self, mode: bool = True):
        for replica in self.replicas:
            replica.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.module.training

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        self.module.load_state_dict(state, strict)  # the replicas share these arrays

    # ---- random streams, for bit-identical resume -------------------------------
    def rng_states(self) -> list:
        """Every replica's generator state, all processes, in rank-then-thread order."""
        mine = [s for r in self.replicas for s in rng_states(r)]
        return [s for rank in self.comm.allgather_json(mine) for s in rank]

    def set_rng_states(self, states: list) -> None:
        per_rank = len(states) // self.comm.size
        mine = states[self.comm.rank * per_rank:(self.comm.rank + 1) * per_rank]
        for replica, state in zip(self.replicas, mine):
            set_rng_states(replica, [state])

    def close(self) -> None:
        """Stop the threads and give BLAS its threads back."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None

    def __getattr__(self, name):  # config, forward, generate, num_parameters, ...: the wrapped model's
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)


def rng_states(model) -> list:
    """The model's random-generator states (a list: one per replica for a :class:`DataParallel`)."""
    if hasattr(model, "rng_states"):
        return model.rng_states()
    rng = getattr(model, "rng", None)
    return [rng.bit_generator.state] if isinstance(rng, np.random.Generator) else []


def set_rng_states(model, states: list) -> None:
    """Inverse of :func:`rng_states`."""
    if hasattr(model, "set_rng_states"):
        model.set_rng_states(states)
        return
    rng = getattr(model, "rng", None)
    if isinstance(rng, np.random.Generator) and states:
        rng.bit_generator.state = states[0]


__all__ = ["Communicator", "DataParallel", "MPICommunicator", "SingleProcess", "default_communicator",
           "launched_by_mpi", "limit_blas_threads", "make_replica", "rng_states", "set_rng_states"]
