"""Label a small dataset on a local platform, export it typed, and train on consensus labels.

python docs/examples/export_to_training.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import cynaps_data as cynaps
from cynaps_data.server.settings import WorkforceSettings

iris = load_iris(as_frame=True)
frame = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
frame["species"] = [iris.target_names[t] for t in frame.pop("target")]

with cynaps.Client.local(
    workforce=WorkforceSettings(annotators=5, seconds_per_judgement=0.005)
) as client:
    project = client.projects.create(
        name="Iris",
        labels=list(iris.target_names),
        quality_settings={"min_annotators": 3, "enable_expert_review": False, "max_annotators": 3},
    )
    project.upload_dataframe(frame, gold_column="species")  # gold drives the simulated annotators
    project.calculate_deposit()
    project.pay_deposit(payment_method="card")
    project.start()
    project.wait(poll_interval=0.25, progress=False)

    df = project.to_pandas(method="dawid_skene")  # typed, with consensus metadata
    print(df[["sepal_length", "label", "agreement", "dawid_skene_label"]].head())
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = LogisticRegression(max_iter=1000).fit(df[features], df["label"].astype(str))
    truth = df["gold"].astype(str)
    print(
        f"consensus labels right: {np.mean(df['label'].astype(str) == truth):.1%}; "
        f"model agrees with the truth on {np.mean(model.predict(df[features]) == truth):.1%}"
    )
    print(pd.Series(project.agreement()).drop("per_label"))
