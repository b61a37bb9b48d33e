"""Diagnose breast tumours (Wisconsin diagnostic data, shipped with the package).

    python examples/breast_cancer.py

30 measurements per tumour → two hidden ReLU layers → the probability that it is malignant.
"""

import neuralnp as nn
from neuralnp.preprocessing import StandardScaler, train_test_split


def main(seed=0, verbose=1):
    x, y = nn.datasets.breast_cancer()  # y = 1 for malignant
    x_train, x_valid, y_train, y_valid = train_test_split(x, y, test_size=0.2, stratify=y, seed=seed)
    scaler = StandardScaler().fit(x_train)  # statistics from the training part only
    x_train, x_valid = scaler.transform(x_train), scaler.transform(x_valid)

    model = nn.Sequential([
        nn.Dense(24, activation="relu"),
        nn.Dense(24, activation="relu"),
        nn.Dense(1, activation="sigmoid"),
    ], seed=seed)
    model.compile(loss="binary_crossentropy", optimizer=nn.Adam(1e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=50, batch_size=32, validation_data=(x_valid, y_valid),
              verbose=verbose)
    if verbose:
        model.summary()
    loss, accuracy = model.evaluate(x_valid, y_valid)
    print(f"validation accuracy {accuracy:.4f} (binary cross-entropy {loss:.4f}) "
          f"on {len(x_valid)} held-out tumours")
    return accuracy


if __name__ == "__main__":
    main()
