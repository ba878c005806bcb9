from django import forms

from webapp.datasets.models import Dataset

KIND_CHOICES = [
    ("auto", "Detect from the file (table, or images for a zip)"),
    ("series", "Time series (a table with an optional time column)"),
]
SAMPLES = {
    "iris": ("Iris", "iris.csv", "auto", "150 flowers, 4 measurements, 3 species — the classic first classifier."),
    "wine": ("Wine", "wine.csv", "auto", "178 wines, 13 chemical measurements, 3 cultivars."),
    "fair_affairs": ("Fair affairs", "fair_affairs.csv", "auto", "6,366 survey answers; regression target."),
    "co2_weekly": ("CO2 weekly", "co2_weekly.csv", "series", "Weekly CO2 at Mauna Loa, 1958–2001, with gaps."),
    "digits8x8": ("Digits 8×8", "digits8x8.zip", "auto", "1,797 grey 8×8 images of handwritten digits."),
}


class UploadForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="auto", required=False)
    resize_height = forms.IntegerField(min_value=1, max_value=1024, required=False)
    resize_width = forms.IntegerField(min_value=1, max_value=1024, required=False)
    file = forms.FileField(required=True, error_messages={"required": "Choose a file to upload."})

    def __init__(self, *args, new_dataset=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.new_dataset = new_dataset

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if self.new_dataset and not name:
            file = self.files.get("file")
            name = (file.name.rsplit(".", 1)[0] if file else "")[:120].strip()
        if self.new_dataset and not name:
            raise forms.ValidationError("Give the data set a name.")
        return name

    def clean(self):
        data = super().clean()
        height, width = data.get("resize_height"), data.get("resize_width")
        if (height is None) != (width is None):
            raise forms.ValidationError("Give both a height and a width to resize images, or neither.")
        data["image_size"] = [height, width] if height else None
        data["kind"] = data.get("kind") or "auto"
        return data


class ColumnsForm(forms.Form):
    target_column = forms.ChoiceField(required=False)
    ignored_columns = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, columns: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_column"].choices = [("", "— none —")] + [(c, c) for c in columns]
        self.fields["ignored_columns"].choices = [(c, c) for c in columns]


def initial_columns(dataset: Dataset) -> dict:
    return {"target_column": dataset.target_column, "ignored_columns": dataset.ignored_columns}
