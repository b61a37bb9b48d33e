"""Who survived the Titanic? The tutorial's seven numeric features, shipped with the package.

    python examples/titanic.py
"""

import neuralnp as nn
from neuralnp.preprocessing import StandardScaler, train_test_split


def main(seed=0):
    x, y = nn.datasets.titanic()  # class, sex, age, siblings/spouses, parents/children, fare, port
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, seed=seed)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = nn.Sequential([
        nn.Dense(32, activation="relu"),
        nn.Dense(16, activation="relu"),
        nn.Dense(1, activation="sigmoid"),
    ], seed=seed)
    model.compile(loss="binary_crossentropy", optimizer=nn.Adam(1e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test)
    print(f"test accuracy {accuracy:.4f} (loss {loss:.4f}) on {len(x_test)} passengers")
    return accuracy


if __name__ == "__main__":
    main()
