"""The seed's Quick Start, end to end, on the embedded local platform.

This is the Getting Started guide's code with ``import cynaps_data as cynaps``, a local client
(sandbox: simulated payments and workforce) and the hourly poll shortened to ``poll_interval``.
"""

from __future__ import annotations

import time

import cynaps_data as cynaps


def run(client: cynaps.Client | None = None, *, poll_interval: float = 1.0) -> list[dict]:
    owns_client = client is None
    # 1. Initialize client
    client = client or cynaps.Client.local()
    try:
        # 2. Create a project
        project = client.projects.create(
            name="Product Image Classification",
            annotation_type="classification",
            labels=["Electronics", "Clothing", "Home & Garden", "Sports", "Other"],
            instructions="Classify each product image into the most appropriate category.",
            quality_settings={
                "min_annotators": 3,  # Each image labeled by 3 annotators
                "consensus_threshold": 0.66,  # 2/3 agreement required
                "enable_expert_review": True,  # Expert reviews disputed items
            },
        )
        print(f"✓ Project created: {project.id}")

        # 3. Upload your data
        tasks = [
            {"image_url": "https://your-cdn.com/products/item1.jpg", "product_id": "SKU001"},
            {"image_url": "https://your-cdn.com/products/item2.jpg", "product_id": "SKU002"},
            {"image_url": "https://your-cdn.com/products/item3.jpg", "product_id": "SKU003"},
        ]
        upload_result = project.upload_tasks(tasks)
        print(f"✓ Uploaded {upload_result.task_count} tasks")

        # 4. Pay security deposit and start project
        deposit = project.calculate_deposit()
        print(f"Security deposit required: {deposit.amount} Credits")
        project.pay_deposit(payment_method="razorpay")  # sandbox: simulated, livemode false
        project.start()
        print("✓ Project started!")

        # 5. Monitor progress
        last = None
        while True:
            status = project.get_status()
            line = f"Progress: {status.progress}% ({status.completed}/{status.total} tasks)"
            if line != last:
                print(line)
                last = line
            if status.is_complete:
                break
            time.sleep(poll_interval)

        # 6. Download results
        annotations = project.export(format="json")
        print(f"✓ Downloaded {len(annotations)} annotations")

        # 7. Use in your ML pipeline
        for annotation in annotations:
            label = annotation["annotations"][0]["result"]["value"]
            product_id = annotation["data"]["product_id"]
            print(f"{product_id}: {label}")
        return annotations
    finally:
        if owns_client:
            client.close()


if __name__ == "__main__":
    run()
