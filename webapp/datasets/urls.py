from django.urls import path

from webapp.datasets import views

urlpatterns = [
    path("w/<slug:ws>/datasets/", views.dataset_list, name="dataset-list"),
    path("w/<slug:ws>/datasets/upload/", views.dataset_upload, name="dataset-upload"),
    path("w/<slug:ws>/datasets/samples/", views.dataset_load_sample, name="dataset-load-sample"),
    path("w/<slug:ws>/datasets/<int:pk>/", views.dataset_detail, name="dataset-detail"),
    path("w/<slug:ws>/datasets/<int:pk>/upload/", views.dataset_new_version, name="dataset-new-version"),
    path("w/<slug:ws>/datasets/<int:pk>/columns/", views.dataset_columns, name="dataset-columns"),
    path("w/<slug:ws>/datasets/<int:pk>/delete/", views.dataset_delete, name="dataset-delete"),
    path("w/<slug:ws>/datasets/<int:pk>/v<int:number>/status/", views.version_status, name="dataset-version-status"),
    path("w/<slug:ws>/datasets/<int:pk>/v<int:number>/images/<int:index>.png", views.version_image,
         name="dataset-version-image"),
]
