"""Training steps replayed as CUDA graphs.

On a GPU most of a small network's step is the host launching kernels one by one. A training
step that reads nothing back (see ``training.train_step``) can instead be captured once as a CUDA
graph and replayed: one launch per step. :class:`StepGraphs` keeps one graph per batch shape (the
full batch, and the last partial one), each captured right after an eager run of the same step on
real data. That run is the warm-up CUDA asks for (kernels compiled, workspaces allocated) and a
training step like any other; the capture itself computes nothing.

What a graph fixes at capture, and how each is kept right on replay:

- the arrays: every buffer a step reads or writes is allocated before capture, or, for the
  temporaries of the array operations, from a private memory pool that lives with the graphs
  (the warm-up leaves it holding free blocks of exactly the sizes the capture asks for);
- the batch: the graph reads the loop's batch buffers, which each step gathers into first;
- per-step numbers (learning rate, bias corrections, the step count, the gate): device arrays
  the step computes from the optimizer's own counter and rate table;
- Python decisions (the batch size, which optimizer branch runs): the same for every step of
  one shape, which is why there is a graph per shape.

A layer that draws random numbers on the host cannot be captured (dropout draws on the device
there: ``Ops.dropout_mask``); :func:`capturable` says so and the loop then runs the same step
eagerly, as it does for a step that talks to other processes.
"""


def capturable(model):
    """Whether ``model``'s training steps can be replayed graphs: its Ops can capture and every
    layer is capturable (``Layer.capturable``). The loop also asks that it trains alone."""
    return model.ops.can_capture and all(layer.capturable for layer in model.layers)


class StepGraphs:
    """One captured training step per batch size; :meth:`step` runs the next step through it."""

    def __init__(self, model, step):
        self.ops, self.step_fn, self.loss_fn = model.ops, step, model._train_loss
        xp = self.ops.xp
        self.stream = xp.cuda.Stream(non_blocking=True)
        self.pool = xp.cuda.MemoryPool()  # the graphs' temporaries, kept with them
        self.loss = xp.zeros(1)  # the captured step writes its loss here
        self.graphs = {}

    def run(self):
        """The context the whole fit runs in: this stream, so the batch gathers, the replays,
        the copies of the losses and the validation run in order."""
        return self.stream

    def step(self, xb, yb, wb, count, loss, gate, bad):
        """Train on this batch (already in the loop's buffers); its loss goes into ``loss``.
        Returns the network's output, as ``train_step`` does. A replay runs no Python, so what
        a step leaves in Python attributes for the metrics (the loss's ``probabilities``) is
        pointed here at the arrays the graph writes."""
        xp, rows = self.ops.xp, len(xb)
        captured = self.graphs.get(rows)
        with xp.cuda.using_allocator(self.pool.malloc):
            if captured is None:
                out = self.step_fn(xb, yb, wb, count, self.loss, gate, bad)  # the warm-up
                probs = getattr(self.loss_fn, "probabilities", None)
                self.graphs[rows] = self._capture(xb, yb, wb, count, gate, bad)
            else:
                graph, out, probs = captured
                graph.launch(self.stream)
        if probs is not None:
            self.loss_fn.probabilities = probs
        xp.copyto(loss, self.loss)
        return out

    def _capture(self, xb, yb, wb, count, gate, bad):
        """``(graph, output, probabilities)``: the step recorded (not run), and the arrays it
        writes the network's output and the loss's probabilities to."""
        stream, runtime = self.stream, self.ops.xp.cuda.runtime
        # Relaxed: the allocations the pool serves from its free blocks are allowed
        mode = getattr(runtime, "streamCaptureModeRelaxed", None)
        stream.begin_capture() if mode is None else stream.begin_capture(mode)
        try:
            out = self.step_fn(xb, yb, wb, count, self.loss, gate, bad)
        finally:
            graph = stream.end_capture()
        return graph, out, getattr(self.loss_fn, "probabilities", None)
