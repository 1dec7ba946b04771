"""libwayland-client through ctypes, for the present probe: requests, listeners and events by name.

Runs *inside* the sandbox/guest/container with the standard library and ctypes only, beside
present.py. The core interfaces (wl_display, wl_registry, wl_compositor, wl_surface, wl_callback,
...) are the tables libwayland-client exports (`wl_surface_interface`); the extension interfaces
the probe needs (xdg-shell's, presentation-time's) are built here as `struct wl_interface` and
`struct wl_message` tables exactly as `wayland-scanner private-code` writes them (a test compares
them with its output): the same order of requests and events, signatures with their `since`
digits and '?' for nullable arguments, one `types` entry per argument. Requests and events are
looked up by name in those tables, and each argument is passed as the ctypes value its signature
letter says (a bare Python int for a proxy is truncated to 32 bits by a variadic call)."""
import ctypes
import select

from probelib import ProbeError

c_int, c_int32, c_uint32, c_void_p, c_char_p = (ctypes.c_int, ctypes.c_int32, ctypes.c_uint32,
                                                ctypes.c_void_p, ctypes.c_char_p)


class WlMessage(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("signature", c_char_p), ("types", ctypes.POINTER(c_void_p))]


class WlInterface(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("version", c_int), ("method_count", c_int),
                ("methods", ctypes.POINTER(WlMessage)), ("event_count", c_int),
                ("events", ctypes.POINTER(WlMessage))]


# name: (version, requests, events); a message is (name, signature, [each argument's interface]).
PROTOCOLS = {
    # stable/xdg-shell/xdg-shell.xml (wayland-protocols 1.31: xdg_wm_base version 5)
    "xdg_wm_base": (5, [
        ("destroy", "", []), ("create_positioner", "n", ["xdg_positioner"]),
        ("get_xdg_surface", "no", ["xdg_surface", "wl_surface"]), ("pong", "u", [None]),
    ], [("ping", "u", [None])]),
    "xdg_positioner": (5, [
        ("destroy", "", []), ("set_size", "ii", [None, None]),
        ("set_anchor_rect", "iiii", [None] * 4), ("set_anchor", "u", [None]),
        ("set_gravity", "u", [None]), ("set_constraint_adjustment", "u", [None]),
        ("set_offset", "ii", [None, None]), ("set_reactive", "3", []),
        ("set_parent_size", "3ii", [None, None]), ("set_parent_configure", "3u", [None]),
    ], []),
    "xdg_surface": (5, [
        ("destroy", "", []), ("get_toplevel", "n", ["xdg_toplevel"]),
        ("get_popup", "n?oo", ["xdg_popup", "xdg_surface", "xdg_positioner"]),
        ("set_window_geometry", "iiii", [None] * 4), ("ack_configure", "u", [None]),
    ], [("configure", "u", [None])]),
    "xdg_toplevel": (5, [
        ("destroy", "", []), ("set_parent", "?o", ["xdg_toplevel"]), ("set_title", "s", [None]),
        ("set_app_id", "s", [None]), ("show_window_menu", "ouii", ["wl_seat", None, None, None]),
        ("move", "ou", ["wl_seat", None]), ("resize", "ouu", ["wl_seat", None, None]),
        ("set_max_size", "ii", [None, None]), ("set_min_size", "ii", [None, None]),
        ("set_maximized", "", []), ("unset_maximized", "", []),
        ("set_fullscreen", "?o", ["wl_output"]), ("unset_fullscreen", "", []),
        ("set_minimized", "", []),
    ], [
        ("configure", "iia", [None, None, None]), ("close", "", []),
        ("configure_bounds", "4ii", [None, None]), ("wm_capabilities", "5a", [None]),
    ]),
    "xdg_popup": (5, [
        ("destroy", "", []), ("grab", "ou", ["wl_seat", None]),
        ("reposition", "3ou", ["xdg_positioner", None]),
    ], [
        ("configure", "iiii", [None] * 4), ("popup_done", "", []), ("repositioned", "3u", [None]),
    ]),
    # stable/presentation-time/presentation-time.xml (version 1)
    "wp_presentation": (1, [
        ("destroy", "", []), ("feedback", "on", ["wl_surface", "wp_presentation_feedback"]),
    ], [("clock_id", "u", [None])]),
    "wp_presentation_feedback": (1, [], [
        ("sync_output", "o", ["wl_output"]), ("presented", "uuuuuuu", [None] * 7),
        ("discarded", "", []),
    ]),
}

# A signature letter's ctypes type: int, uint, fixed, string, object, new_id, array, fd.
ARG_TYPES = {"i": c_int32, "u": c_uint32, "f": c_int32, "s": c_char_p, "o": c_void_p,
             "n": c_void_p, "a": c_void_p, "h": c_int32}


def letters(signature):
    """The argument types of a signature, without its `since` digits and nullable marks."""
    return [ch for ch in signature if ch.isalpha()]


def messages(table, count):
    return [(table[i].name.decode(), table[i].signature.decode()) for i in range(count)]


class Client:
    """One connection to a compositor: the interfaces, requests, listeners and event dispatch."""

    def __init__(self):
        try:
            self.lib = lib = ctypes.CDLL("libwayland-client.so.0")
        except OSError as exc:
            raise ProbeError("cannot load libwayland-client.so.0: %s" % exc,
                             step="wl_display_connect") from None
        vp = c_void_p
        for name, restype, argtypes in (
                ("wl_display_connect", vp, [c_char_p]), ("wl_display_disconnect", None, [vp]),
                ("wl_display_roundtrip", c_int, [vp]), ("wl_display_flush", c_int, [vp]),
                ("wl_display_dispatch_pending", c_int, [vp]), ("wl_display_get_fd", c_int, [vp]),
                ("wl_display_get_error", c_int, [vp]), ("wl_display_prepare_read", c_int, [vp]),
                ("wl_display_read_events", c_int, [vp]), ("wl_display_cancel_read", None, [vp]),
                ("wl_display_get_protocol_error", c_uint32, [vp, ctypes.POINTER(vp),
                                                             ctypes.POINTER(c_uint32)]),
                ("wl_proxy_add_listener", c_int, [vp, vp, vp]),
                ("wl_proxy_get_version", c_uint32, [vp]), ("wl_proxy_destroy", None, [vp])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        # variadic: no argtypes, every argument passed as a ctypes value (libwayland >= 1.20 has
        # marshal_flags; older ones the constructor form)
        self.marshal_flags = getattr(lib, "wl_proxy_marshal_flags", None)
        self.marshal_versioned = lib.wl_proxy_marshal_constructor_versioned
        for fn in (self.marshal_flags, self.marshal_versioned):
            if fn is not None:
                fn.restype = vp
        self.keep = []  # what the C side points into: tables, listeners, callbacks
        self.interfaces = {}
        self.handler_errors = []
        self.display = None
        self.define(PROTOCOLS)

    def interface(self, name):
        """The wl_interface named so: ours, or one libwayland-client exports."""
        if name not in self.interfaces:
            try:
                self.interfaces[name] = WlInterface.in_dll(self.lib, name + "_interface")
            except ValueError:
                raise ProbeError("libwayland-client has no %s_interface" % name,
                                 step="wl_display_connect") from None
        return self.interfaces[name]

    def define(self, protocols):
        for name in protocols:
            self.interfaces[name] = WlInterface()
        for name, (version, requests, events) in protocols.items():
            struct = self.interfaces[name]
            struct.name, struct.version = name.encode(), version  # the struct keeps the bytes
            struct.method_count, struct.methods = len(requests), self.table(requests)
            struct.event_count, struct.events = len(events), self.table(events)

    def table(self, listed):
        array = (WlMessage * max(1, len(listed)))()
        for index, (name, signature, types) in enumerate(listed):
            entries = (c_void_p * max(1, len(types)))(
                *[ctypes.addressof(self.interface(t)) if t else None for t in types])
            text = (name.encode(), signature.encode())
            array[index] = WlMessage(text[0], text[1], ctypes.cast(entries,
                                                                   ctypes.POINTER(c_void_p)))
            self.keep += [entries, text]
        self.keep.append(array)
        return ctypes.cast(array, ctypes.POINTER(WlMessage))

    def connect(self):
        """The compositor WAYLAND_DISPLAY names (a socket in XDG_RUNTIME_DIR, or a path)."""
        self.display = self.lib.wl_display_connect(None)
        if not self.display:
            raise ProbeError("wl_display_connect failed: no compositor at $WAYLAND_DISPLAY",
                             step="wl_display_connect")
        return self.display

    def error(self):
        """The connection's error in words: a protocol error names its interface and object."""
        code = self.lib.wl_display_get_error(self.display)
        if not code:
            return "no error"
        interface, object_id = c_void_p(), c_uint32()
        protocol = self.lib.wl_display_get_protocol_error(self.display, ctypes.byref(interface),
                                                          ctypes.byref(object_id))
        if interface.value:
            name = WlInterface.from_address(interface.value).name.decode()
            return "protocol error %d on %s#%d" % (protocol, name, object_id.value)
        return "errno %d" % code

    def request(self, proxy, interface, name, *args, **options):
        """Send request `name` of `interface` on `proxy`; options: new (the interface of the object
        it creates, returned), version (the new object's; default the proxy's)."""
        struct = self.interface(interface)
        requests = messages(struct.methods, struct.method_count)
        opcode = [r[0] for r in requests].index(name)
        signature = letters(requests[opcode][1])
        if len(args) != len(signature):
            raise ProbeError("%s.%s takes %d arguments" % (interface, name, len(signature)))
        values = [ARG_TYPES[kind](value) for kind, value in zip(signature, args)]
        new = options.get("new")
        head = [c_void_p(proxy), c_uint32(opcode),
                c_void_p(ctypes.addressof(self.interface(new)) if new else None),
                c_uint32(options.get("version") or self.lib.wl_proxy_get_version(proxy))]
        if self.marshal_flags is not None:
            return self.marshal_flags(*head, c_uint32(0), *values)  # flags: no destructor
        return self.marshal_versioned(*head, *values)

    def listener(self, interface, handlers):
        """A listener for `interface`'s events, for any number of its proxies. handlers: {event
        name: callable(proxy, *arguments)}; events without one are ignored. A handler's
        exception is kept (handler_errors), never unwound through libwayland."""
        struct = self.interface(interface)
        events = messages(struct.events, struct.event_count)
        functions = (c_void_p * max(1, len(events)))()
        for index, (event, signature) in enumerate(events):
            handler = handlers.get(event)

            def call(data, obj, *args, handler=handler, event=event):
                if handler is not None:
                    try:
                        handler(obj, *args)
                    except Exception as exc:  # noqa: B902 - must not reach C
                        self.handler_errors.append("%s.%s: %r" % (interface, event, exc))

            prototype = ctypes.CFUNCTYPE(None, c_void_p, c_void_p,
                                         *[ARG_TYPES[kind] for kind in letters(signature)])
            callback = prototype(call)
            self.keep.append(callback)
            functions[index] = ctypes.cast(callback, c_void_p).value
        self.keep.append(functions)
        return functions

    def listen(self, proxy, interface, handlers_or_listener):
        """Events of `proxy` to a listener (or to handlers, a listener made for it)."""
        functions = (self.listener(interface, handlers_or_listener)
                     if isinstance(handlers_or_listener, dict) else handlers_or_listener)
        if self.lib.wl_proxy_add_listener(proxy, functions, None) != 0:
            raise ProbeError("wl_proxy_add_listener failed on %s" % interface)

    def roundtrip(self, step):
        if self.lib.wl_display_roundtrip(self.display) < 0:
            raise ProbeError("%s: the connection failed: %s" % (step, self.error()), step=step)

    def registry(self):
        """The registry and every global it announces, [(name, interface, version)]."""
        found = []
        registry = self.request(self.display, "wl_display", "get_registry", None,
                                new="wl_registry")
        self.listen(registry, "wl_registry", {
            "global": lambda _, name, interface, version: found.append(
                (name, interface.decode(), version))})
        self.roundtrip("wl_registry")
        return registry, found

    def bind(self, registry, found, interface, highest):
        """The global `interface` bound at the highest version both sides speak, or None."""
        for name, offered, version in found:
            if offered == interface:
                version = min(version, highest)
                return self.request(registry, "wl_registry", "bind", name, interface.encode(),
                                    version, None, new=interface, version=version)
        return None

    def pump(self):
        """Dispatch what was read already (the driver reads the socket too) and send ours."""
        self.lib.wl_display_dispatch_pending(self.display)
        self.lib.wl_display_flush(self.display)

    def wait(self, seconds):
        """Dispatch the default queue's events for at most `seconds`, never blocking longer;
        False when the connection has failed."""
        lib, display = self.lib, self.display
        while lib.wl_display_prepare_read(display) != 0:
            if lib.wl_display_dispatch_pending(display) < 0:
                return False
        lib.wl_display_flush(display)
        readable, _, _ = select.select([lib.wl_display_get_fd(display)], [], [], max(0, seconds))
        if readable:
            if lib.wl_display_read_events(display) < 0:
                return False
        else:
            lib.wl_display_cancel_read(display)
        return lib.wl_display_dispatch_pending(display) >= 0

    def destroy(self, proxy):
        self.lib.wl_proxy_destroy(proxy)

    def disconnect(self):
        if self.display:
            self.lib.wl_display_disconnect(self.display)
            self.display = None
