from math import ceil

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm

from webapp.accounts import ratelimit, sharing, webhooks
from webapp.accounts.models import Role


class SignUpForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]+\Z", max_length=150,
        error_messages={"invalid": "Use letters, digits and @ . + - _ only."},
    )
    email = forms.EmailField(required=False, help_text="Optional; used only for password resets.")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("This username is taken.")
        return username

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password"):
            user = get_user_model()(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(cleaned["password"], user)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class RateLimitedLoginForm(AuthenticationForm):
    """Django's log-in form, refusing to check passwords after too many recent failures."""

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = ratelimit.client_ip(self.request)
        wait = ratelimit.seconds_locked(username, ip)
        if wait:
            minutes = ceil(wait / 60)
            raise forms.ValidationError(
                f"Too many failed log-in attempts for this account. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="rate_limited",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            ratelimit.record_failure(username, ip)
            raise
        ratelimit.clear(username, ip)
        return cleaned


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=100)

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the workspace a name.")
        return name


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


EXPIRY_CHOICES = [(1, "1 day"), (7, "7 days"), (30, "30 days")]


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    days = forms.TypedChoiceField(label="Expires after", choices=EXPIRY_CHOICES, coerce=int, initial=7)
    multi_use = forms.BooleanField(label="Anyone with the link may join (multi-use)", required=False)


class ShareLinkForm(forms.Form):
    target_type = forms.ChoiceField(label="What", choices=[])
    target_id = forms.CharField(label="Id", max_length=40)
    days = forms.TypedChoiceField(label="Expires after", coerce=int, required=False, empty_value=None,
                                  choices=[("", "Never")] + EXPIRY_CHOICES)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from webapp.accounts.models import ShareTarget

        labels = dict(ShareTarget.choices)
        self.fields["target_type"].choices = [(t, labels.get(t, t)) for t in sharing.shareable_types() if t in labels]


class WebhookForm(forms.Form):
    url = forms.CharField(label="URL", max_length=webhooks.MAX_URL_LENGTH,
                          widget=forms.URLInput(attrs={"placeholder": "https://hooks.slack.com/services/…"}))

    def clean_url(self):
        return webhooks.validate_url(self.cleaned_data["url"])


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "laptop, CI, notebook…"}))

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the token a name.")
        return name


class ResetLinkForm(forms.Form):
    username = forms.CharField(max_length=150)

    def clean_username(self):
        user = get_user_model().objects.filter(username__iexact=self.cleaned_data["username"].strip()).first()
        if user is None:
            raise forms.ValidationError("There is no such user.")
        return user
