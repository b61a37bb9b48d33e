"""XOR with a 2-3-1 tanh network, activations written as layers of their own.

    python examples/xor.py
"""

import neuralnp as nn


def main(seed=0):
    x, y = nn.datasets.xor()
    model = nn.Sequential([nn.Dense(3), nn.Tanh(), nn.Dense(1), nn.Tanh()], seed=seed)
    model.compile(loss="mse", optimizer=nn.SGD(0.1))
    history = model.fit(x, y, epochs=1000, batch_size=1, verbose=0)
    print(f"final MSE {history.history['loss'][-1]:.5f}")
    for row, out in zip(x, model.predict(x)):
        print(f"{row.astype(int)} -> {out[0]:.3f}")
    return history.history["loss"][-1]


if __name__ == "__main__":
    main()
