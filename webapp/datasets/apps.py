from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "webapp.datasets"
    label = "datasets"

    def ready(self):
        _register_sharing()


def _register_sharing() -> None:
    """A data set's summary page can be shared read-only by link (the accounts app owns the links)."""
    from webapp.accounts import sharing
    from webapp.datasets import views
    from webapp.datasets.models import Dataset

    def resolve_dataset(workspace, target_id):
        if not target_id.isdigit() or len(target_id) > 12:  # beyond any id; the database would overflow
            return None
        return Dataset.objects.filter(workspace=workspace, pk=int(target_id)).first()

    sharing.register_resolver("dataset", resolve_dataset)
    sharing.register_renderer("dataset", views.render_shared_dataset)
    sharing.register_data("dataset", "image", views.shared_dataset_image)
