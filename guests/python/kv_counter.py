# The seed's HttpServer example (tests/reference/counter.py) with its count
# kept by the host: wasi:keyvalue's atomic increment, so every worker,
# instance, version and (on Redis) process of the service counts together,
# and a trap or a reload loses nothing. config.crash=PATH makes a request
# to PATH trap the instance.
from weft import config, log
from weft.keyvalue import Bucket, KeyValueError
from weft.web import resource

class Counter(resource.Resource):
    isLeaf = True

    def __init__(self):
        resource.Resource.__init__(self)
        self.bucket = None
        crash = config.get("crash")
        self.crash = crash.encode() if crash is not None else None

    def render_GET(self, request):
        if self.crash is not None and request.path == self.crash:
            while True:  # a trap: the instance's deadline ends it
                pass
        request.setHeader(b"content-type", b"text/plain")
        try:
            if self.bucket is None:
                self.bucket = Bucket.open("counter")
            numberRequests = self.bucket.increment("requests")
        except KeyValueError as error:
            log.warn(f"not counted: {error}")
            request.setResponseCode(503)
            return b"The count is unavailable\n"
        content = u"I am request #{}\n".format(numberRequests)
        return content.encode("ascii")
