"""Runs and sweeps stored before ``data_config.forecast`` existed forecast the level: say so in their
stored configs, so that resuming, continuing, forking or extending them keeps their meaning while
new ones default to forecasting the change."""

from django.db import migrations

BATCH = 500


def forecast_the_level(apps, schema_editor):
    for name in ("Run", "Sweep"):
        model = apps.get_model("experiments", name)
        changed = []
        for row in model.objects.only("pk", "data_config").iterator(chunk_size=BATCH):
            config = row.data_config if isinstance(row.data_config, dict) else {}
            if "forecast" not in config:
                row.data_config = {**config, "forecast": "level"}
                changed.append(row)
            if len(changed) >= BATCH:
                model.objects.bulk_update(changed, ["data_config"])
                changed = []
        model.objects.bulk_update(changed, ["data_config"])


class Migration(migrations.Migration):

    dependencies = [
        ("experiments", "0005_runs_restrict_their_data"),
    ]

    operations = [
        migrations.RunPython(forecast_the_level, migrations.RunPython.noop),
    ]
