"""``{% absolute_url path %}``: a path as the full URL people copy (see webapp.core.links)."""
from django import template

from webapp.core.links import absolute_url as _absolute_url

register = template.Library()


@register.simple_tag(takes_context=True)
def absolute_url(context, path):
    return _absolute_url(path, context.get("request"))
