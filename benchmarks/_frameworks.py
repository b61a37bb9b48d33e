"""The child side of the benchmark: train one configuration with one framework and report.

    python benchmarks/_frameworks.py SPEC.json

SPEC.json (written by bench_mlp.py) names the framework, the network, the recipe, the data and
initial-weights files and where to write the result. Each run is a fresh process, so a
framework's imports, thread pools and memory never touch another's; the peak memory is this
process's ``ru_maxrss`` at the end. Only NumPy and the framework under test are imported.

Each runner returns ``{"epoch_times": [seconds, ...], "epoch_others_cpu_s": [seconds, ...],
"accuracy": float or None, "info": {...}}``: the wall time of every epoch (the first included;
the parent drops it as warm-up) and the CPU time other processes used during each.
"""

import json
import os
import resource
import sys
import time
import traceback
import warnings

import numpy as np


def load_inputs(spec):
    """The data arrays and the Keras-ordered initial weights named in ``spec``."""
    with np.load(spec["data"]) as f:
        data = {k: f[k] for k in f.files}
    with np.load(spec["weights"]) as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    return data, weights


def accuracy(predicted_labels, y):
    return float(np.mean(np.asarray(predicted_labels) == y))


# -- neuralnp ----------------------------------------------------------------------------------

def run_neuralnp(spec, data, weights):
    """``fit`` once for all epochs, timed per epoch by a callback: the way a user trains."""
    import neuralnp as nn

    layers = [nn.Dense(u, activation=spec["hidden_activation"]) for u in spec["units"][:-1]]
    layers.append(nn.Dense(spec["units"][-1], activation="softmax"))
    model = nn.Sequential(layers, seed=0, dtype="float32")
    model.build((data["x_train"].shape[1],))
    model.set_weights(weights)
    optimizer = (nn.Adam(spec["learning_rate"]) if spec["optimizer"] == "adam"
                 else nn.SGD(spec["learning_rate"]))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer,
                  metrics=["accuracy"])
    timer = EpochTimer()
    callback = nn.callbacks.LambdaCallback(on_epoch_begin=timer.begin, on_epoch_end=timer.end)
    model.fit(data["x_train"], data["y_train"], epochs=spec["epochs"],
              batch_size=spec["batch_size"], verbose=0, callbacks=[callback])
    _, acc = model.evaluate(data["x_test"], data["y_test"])
    return {**timer.results(), "accuracy": float(acc),
            "info": {"version": nn.__version__, "libraries": blas_summary()}}


class EpochTimer:
    """Wall time between a framework's epoch-begin and epoch-end hooks, and how much of the
    machine other processes took meanwhile.

    The machine's counters are read outside the timed interval (reading /proc/stat costs
    ~25 µs, a few percent of a tiny epoch). They tick every 10 ms, so one short epoch's count
    is coarse and may be negative; the parent sums them over the epochs when the epochs are
    short.
    """

    def __init__(self):
        self.times, self.others = [], []
        self._start = self._counters = None

    def begin(self, epoch=None, logs=None):
        self._counters = (machine_busy_seconds(), process_cpu_seconds())
        self._start = time.perf_counter()

    def end(self, epoch=None, logs=None):
        elapsed = time.perf_counter() - self._start
        machine, own = machine_busy_seconds(), process_cpu_seconds()
        self.times.append(elapsed)
        if machine is not None and self._counters[0] is not None:
            self.others.append(machine - self._counters[0] - (own - self._counters[1]))

    def results(self):
        return {"epoch_times": self.times, "epoch_others_cpu_s": self.others}


# -- PyTorch -----------------------------------------------------------------------------------

def run_torch(spec, data, weights):
    """A plain eager loop: shuffle indices each epoch, index the batch, step."""
    import torch

    torch.set_num_threads(spec.get("threads") or os.cpu_count())
    torch.manual_seed(0)
    hidden = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[spec["hidden_activation"]]
    modules = []
    for i in range(0, len(weights), 2):
        kernel, bias = weights[i], weights[i + 1]
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))  # torch stores (out, in)
            linear.bias.copy_(torch.from_numpy(bias))
        modules.append(linear)
        if i + 2 < len(weights):
            modules.append(hidden())
    # The last Linear emits logits; CrossEntropyLoss applies the log-softmax itself.
    model = torch.nn.Sequential(*modules)
    loss_fn = torch.nn.CrossEntropyLoss()
    lr = spec["learning_rate"]
    optimizer = (torch.optim.Adam(model.parameters(), lr=lr, eps=1e-8)
                 if spec["optimizer"] == "adam" else torch.optim.SGD(model.parameters(), lr=lr))

    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    n, batch = len(x), spec["batch_size"]
    generator = torch.Generator().manual_seed(0)
    timer = EpochTimer()
    model.train()
    for _ in range(spec["epochs"]):
        timer.begin()
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, batch):
            index = order[first:first + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
        timer.end()

    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data["x_test"])).argmax(dim=1).numpy()
    config = torch.__config__.show()
    blas = next((part.split("=")[1] for part in config.replace(",", " ").split()
                 if part.startswith("BLAS_INFO=")), "unknown")
    return {**timer.results(), "accuracy": accuracy(predicted, data["y_test"]),
            "info": {"version": torch.__version__, "torch_threads": torch.get_num_threads(),
                     "torch_blas": blas, "mkldnn": torch.backends.mkldnn.is_available(),
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "libraries": blas_summary()}}


# -- Keras 3 on TensorFlow ---------------------------------------------------------------------

def run_keras(spec, data, weights):
    """``fit`` once for all epochs with a timing callback; graph mode, no XLA."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf
    import keras

    # As many compute threads as torch gets; this must precede any TensorFlow op.
    tf.config.threading.set_intra_op_parallelism_threads(spec.get("threads") or os.cpu_count())
    keras.utils.set_random_seed(0)
    n_inputs = data["x_train"].shape[1]
    layers = [keras.Input((n_inputs,))]
    layers += [keras.layers.Dense(u, activation=spec["hidden_activation"])
               for u in spec["units"][:-1]]
    layers.append(keras.layers.Dense(spec["units"][-1], activation="softmax"))
    model = keras.Sequential(layers)
    model.set_weights(weights)
    lr = spec["learning_rate"]
    # Keras's Adam defaults to epsilon 1e-7; the others use 1e-8.
    optimizer = (keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
                 if spec["optimizer"] == "adam" else keras.optimizers.SGD(learning_rate=lr))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer,
                  metrics=["accuracy"], jit_compile=False)

    timer = EpochTimer()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            timer.begin(epoch)

        def on_epoch_end(self, epoch, logs=None):
            timer.end(epoch)

    model.fit(data["x_train"], data["y_train"], batch_size=spec["batch_size"],
              epochs=spec["epochs"], shuffle=True, verbose=0, callbacks=[Timer()])
    probabilities = model.predict(data["x_test"], batch_size=1000, verbose=0)
    return {**timer.results(),
            "accuracy": accuracy(probabilities.argmax(axis=1), data["y_test"]),
            "info": {"version": keras.__version__, "tensorflow": tf.__version__,
                     "backend": keras.backend.backend(),
                     "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                     "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
                     "libraries": blas_summary()}}


# -- scikit-learn ------------------------------------------------------------------------------

def run_sklearn(spec, data, weights):
    """``MLPClassifier.partial_fit`` once per epoch.

    ``partial_fit`` is one shuffled epoch that keeps the optimizer; ``warm_start=True`` with
    ``max_iter=1`` does the same work but builds a fresh Adam (moments and step count reset) on
    every call. A throw-away ``partial_fit`` on one batch allocates the model, then the shared
    initial weights are copied in and the optimizer is dropped so that it starts afresh.
    """
    import sklearn
    from sklearn.neural_network import MLPClassifier

    warnings.filterwarnings("ignore")  # ConvergenceWarning and friends: not what we measure
    adam = spec["optimizer"] == "adam"
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(spec["units"][:-1]),
        activation={"relu": "relu", "sigmoid": "logistic"}[spec["hidden_activation"]],
        solver="adam" if adam else "sgd", alpha=0.0, batch_size=spec["batch_size"],
        learning_rate="constant", learning_rate_init=spec["learning_rate"],
        momentum=0.0, nesterovs_momentum=False, epsilon=1e-8,
        max_iter=1, tol=0.0, n_iter_no_change=10**9, early_stopping=False, shuffle=True,
        # A RandomState object (not an int) so that every epoch draws a new shuffle.
        random_state=np.random.RandomState(0))
    x, y = data["x_train"], data["y_train"]
    classes = np.arange(spec["units"][-1])
    clf.partial_fit(x[:spec["batch_size"]], y[:spec["batch_size"]], classes=classes)
    for coef, intercept, kernel, bias in zip(clf.coefs_, clf.intercepts_, weights[0::2],
                                              weights[1::2]):
        if coef.shape != kernel.shape:
            # Two classes: sklearn has one logistic output. softmax([a, b])[1] = sigmoid(b - a),
            # so the difference of the two softmax columns is the same starting function.
            kernel, bias = kernel[:, 1:] - kernel[:, :1], bias[1:] - bias[:1]
        coef[...] = kernel
        intercept[...] = bias
    del clf._optimizer

    timer = EpochTimer()
    for _ in range(spec["epochs"]):
        timer.begin()
        clf.partial_fit(x, y)
        timer.end()
    return {**timer.results(), "accuracy": accuracy(clf.predict(data["x_test"]),
                                                    data["y_test"]),
            "info": {"version": sklearn.__version__, "coef_dtype": str(clf.coefs_[0].dtype),
                     "outputs": int(clf.n_outputs_), "libraries": blas_summary()}}


# -- the matrix-product floor ------------------------------------------------------------------

def run_matmul(spec, data, weights):
    """Only the matrix products of training, through NumPy with preallocated outputs.

    Per batch: X·W forward for every layer, Xᵀ·G (kernel gradient) for every layer and G·Wᵀ
    (input gradient) for every layer but the first. No activations, loss, bias or update: the
    BLAS work any NumPy implementation of this network must do, so a library's time divided by
    this one says how much it spends elsewhere.
    """
    kernels = weights[0::2]
    n, n_inputs = data["x_train"].shape
    batch = spec["batch_size"]
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    rng = np.random.default_rng(0)
    buffers = {b: _matmul_buffers(b, kernels, rng) for b in set(sizes)}
    timer = EpochTimer()
    for _ in range(spec["epochs"]):
        timer.begin()
        for b in sizes:
            _matmul_step(kernels, *buffers[b])
        timer.end()
    return {**timer.results(), "accuracy": None, "info": {"libraries": blas_summary()}}


def _matmul_buffers(batch, kernels, rng):
    """Inputs, activations, output gradients and gradient outputs for one batch size."""
    x = rng.random((batch, kernels[0].shape[0]), dtype=np.float32)
    outs = [np.empty((batch, k.shape[1]), np.float32) for k in kernels]
    grads = [rng.standard_normal((batch, k.shape[1]), dtype=np.float32) for k in kernels]
    kernel_grads = [np.empty_like(k) for k in kernels]
    input_grads = [np.empty((batch, k.shape[0]), np.float32) for k in kernels]
    return x, outs, grads, kernel_grads, input_grads


def _matmul_step(kernels, x, outs, grads, kernel_grads, input_grads):
    inputs = [x, *outs[:-1]]
    for a, w, out in zip(inputs, kernels, outs):
        np.matmul(a, w, out=out)
    for i in reversed(range(len(kernels))):
        np.matmul(inputs[i].T, grads[i], out=kernel_grads[i])
        if i:
            np.matmul(grads[i], kernels[i].T, out=input_grads[i])


# -- the machine's matrix-product rate ---------------------------------------------------------

def run_sgemm_peak(spec, data=None, weights=None, size=2048, repeats=10):
    """GFLOP/s of a big float32 matrix product through NumPy: the rate the fraction-of-peak
    column divides by. Best of ``repeats`` after two warm-up products."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    for _ in range(2):
        np.matmul(a, b, out=c)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - start)
    flops = 2.0 * size ** 3
    return {"gflops_best": flops / min(times) / 1e9,
            "gflops_median": flops / float(np.median(times)) / 1e9,
            "size": size, "repeats": repeats, "numpy": np.__version__,
            "libraries": blas_summary()}


# -- plumbing ----------------------------------------------------------------------------------

def blas_summary():
    """``threadpoolctl.threadpool_info()``: which BLAS/OpenMP libraries this process loaded,
    their version, the kernel chosen for this CPU and the number of threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed: pip install threadpoolctl"}]
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


RUNNERS = {"neuralnp": run_neuralnp, "torch": run_torch, "keras": run_keras,
           "sklearn": run_sklearn, "matmul": run_matmul, "sgemm-peak": run_sgemm_peak}
# The module each framework needs: a missing one makes the row "not installed", not a failure.
REQUIRES = {"neuralnp": "neuralnp", "torch": "torch", "keras": "keras", "sklearn": "sklearn"}


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    framework = spec["framework"]
    result = {"framework": framework, "status": "ok"}
    try:
        module = REQUIRES.get(framework)
        if module:
            try:
                __import__(module)
            except ImportError as e:
                result.update(status="not installed", error=f"{type(e).__name__}: {e}")
                return _write(spec, result)
        data, weights = (None, None) if framework == "sgemm-peak" else load_inputs(spec)
        before = (scheduler_times(), process_cpu_seconds(), machine_busy_seconds())
        start = time.perf_counter()
        result.update(RUNNERS[framework](spec, data, weights))
        wall = time.perf_counter() - start
        after = (scheduler_times(), process_cpu_seconds(), machine_busy_seconds())
        result.update(contention(before, after, wall))
    except Exception as e:  # reported in the table, with the traceback in the JSON
        result.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc())
    result.update(memory_peaks(), cpu_seconds=process_cpu_seconds())
    return _write(spec, result)


def scheduler_times():
    """``{thread id: (seconds on a CPU, seconds runnable but waiting for one)}`` for every
    thread of this process, from /proc/self/task/*/schedstat (empty where there is none)."""
    times = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return times
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                on_cpu, waiting = f.read().split()[:2]
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        times[tid] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
    return times


def machine_busy_seconds():
    """CPU seconds the whole machine has spent not idle since boot (/proc/stat: user, nice,
    system, irq, softirq and steal; idle and iowait left out), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds():
    """User + system CPU time of this process, threads that have ended included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def contention(before, after, wall):
    """Whether the training shared the machine, measured two ways.

    ``others_cpu_fraction``: the CPU time the rest of the machine used during the training (all
    busy time less this process's threads'), as a fraction of all the CPUs' time. ~0 on a quiet
    machine; a few percent or more means the timing is disturbed. (Steal time, when the
    hypervisor gives this VM's CPU to another, counts as others' too.)

    ``runqueue_wait_fraction``: the time this process's threads were ready to run but had no
    CPU, summed over threads, over the wall time (can pass 1). Other processes cause it, and so
    do a framework's own surplus threads (more busy threads than CPUs), so it is kept for the
    record, not used as the noise signal.
    """
    threads_before, own_before, machine_before = before
    threads_after, own_after, machine_after = after
    own = own_after - own_before
    result = {"train_wall_s": wall, "train_cpu_s": own}
    if threads_after and wall > 0:
        # Threads that ended during the training are missing here; fine for a record.
        waiting = sum(a[1] - threads_before.get(t, (0, 0))[1] for t, a in threads_after.items())
        result.update(runqueue_wait_s=waiting, runqueue_wait_fraction=waiting / wall)
    if machine_before is not None and machine_after is not None and wall > 0:
        others = max(0.0, machine_after - machine_before - own)
        result["others_cpu_fraction"] = others / (wall * os.cpu_count())
    return result


def memory_peaks():
    """This process's peak resident memory in MB.

    ``ru_maxrss`` survives ``fork`` + ``exec`` on Linux: a child starts with its parent's peak
    (the parent here has held all of MNIST), so it is kept only for the record. ``VmHWM`` in
    /proc/self/status is the high-water mark of this program's own address space, which is
    the number wanted; elsewhere ``ru_maxrss`` is all there is (KiB on Linux, bytes on macOS).
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mb = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024
    peaks = {"ru_maxrss_mb": maxrss_mb, "peak_mb": maxrss_mb, "peak_source": "ru_maxrss"}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peaks.update(peak_mb=int(line.split()[1]) / 1024, peak_source="VmHWM")
    except OSError:
        pass
    return peaks


def _write(spec, result):
    with open(spec["result"], "w") as f:
        json.dump(result, f)
    return 0 if result["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
