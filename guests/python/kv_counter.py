# The seed's HttpServer example (tests/reference/counter.py) with its count
# kept by the host: wasi:keyvalue's atomic increment, so every worker,
# instance, version and (on Redis) process of the service counts together,
# and a trap or a reload loses nothing. config.crash=PATH makes a request
# to PATH trap the instance.
from twisted.web import server, resource
from twisted.internet import reactor, endpoints

from weft import config, log
from weft.keyvalue import Bucket, KeyValueError

class Counter(resource.Resource):
    isLeaf = True
    bucket = None

    def render_GET(self, request):
        crash = config.get("crash")
        if crash is not None and request.path == crash.encode():
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

endpoints.serverFromString(reactor, "tcp:8080").listen(server.Site(Counter()))
reactor.run()
