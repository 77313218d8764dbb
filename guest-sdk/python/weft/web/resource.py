"""Resources (twisted.web.resource): `render_GET` and friends."""

from weft import _served


class Resource:
    """Something served over HTTP: define `render_GET` (and `render_POST`,
    ...) returning the body as bytes. HEAD is answered with GET's headers.
    The guest module's one Resource subclass is served by a `Site` when it
    defines no Factory."""

    isLeaf = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _served.defined("resource", cls)

    def render(self, request):
        method = request.method.decode("ascii")
        render = getattr(self, "render_" + method, None)
        if render is None:
            raise UnsupportedMethod(allowed_methods(self))
        return render(request)

    def render_HEAD(self, request):
        return self.render_GET(request)


class UnsupportedMethod(Exception):
    """The resource has no `render_` method for the request's method."""

    def __init__(self, allowedMethods):
        super().__init__(allowedMethods)
        self.allowedMethods = allowedMethods


def allowed_methods(resource):
    """The methods `resource` renders, in Twisted's order: base classes'
    `render_` methods first (so HEAD, from `Resource`, leads)."""
    names = {}
    _add_render_names(type(resource), names)
    return [name.encode("ascii") for name in names]


def _add_render_names(cls, names):
    for base in cls.__bases__:
        _add_render_names(base, names)
    for name, value in vars(cls).items():
        if name.startswith("render_") and name != "render_" and callable(value):
            names[name[len("render_") :]] = True
