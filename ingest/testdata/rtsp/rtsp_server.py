#!/usr/bin/python3
"""A stand-in IP camera for storef's RTSP pull tests: GStreamer's rtsp-server on loopback.

Serves a live H.264 test pattern (x264, IDR every --gop frames, no B-frames) and, by default, AAC
audio (avenc_aac), at rtsp://127.0.0.1:PORT/PATH. Optional digest authentication and a choice of
lower transports, so a test can prove which one the client used (a TCP-only server answers a UDP
SETUP with 461 Unsupported Transport, and the other way round).

Prints one line "READY <port>" on stdout once it listens (use --port 0 for a free port), then
runs until killed. Run it with Debian's /usr/bin/python3, whose GI bindings these are:

  apt-get install -y --no-install-recommends python3-gi python3-gst-1.0 \
      gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base \
      gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch_line(args):
    video = (
        "videotestsrc is-live=true pattern={pattern} "
        "! capsfilter name=res caps=video/x-raw,width={w},height={h},framerate={fps}/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
        "bframes=0 b-adapt=false option-string=scenecut=0 bitrate={kbps} "
        "! video/x-h264,profile=constrained-baseline "
        "! rtph264pay name=pay0 pt=96 config-interval=-1"
    ).format(
        pattern=args.pattern,
        w=args.width,
        h=args.height,
        fps=args.fps,
        gop=args.gop,
        kbps=args.kbps,
    )
    if args.audio == "aac":
        audio = (
            "audiotestsrc is-live=true wave=sine freq=440 "
            "! audio/x-raw,rate={rate},channels={ch} ! audioconvert ! audioresample "
            "! avenc_aac bitrate=64000 ! rtpmp4gpay name=pay1 pt=97"
        ).format(rate=args.rate, ch=args.channels)
    elif args.audio == "pcmu":
        audio = (
            "audiotestsrc is-live=true wave=sine freq=440 "
            "! audio/x-raw,rate=8000,channels=1 ! audioconvert ! mulawenc "
            "! rtppcmupay name=pay1 pt=0"
        )
    else:
        audio = ""
    return "( " + video + " " + audio + " )"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--path", default="/cam")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--protocols", choices=["tcp", "udp", "both"], default="both")
    p.add_argument("--audio", choices=["aac", "pcmu", "none"], default="aac")
    p.add_argument("--rate", type=int, default=48000, help="AAC sample rate")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--gop", type=int, default=30)
    p.add_argument("--kbps", type=int, default=300)
    p.add_argument("--pattern", default="ball")
    p.add_argument(
        "--switch-after",
        type=float,
        help="seconds after the media starts, change the resolution (new SPS/PPS in-band)",
    )
    p.add_argument("--switch-size", default="640x480")
    args = p.parse_args()

    Gst.init(None)
    for element in ("x264enc", "rtph264pay", "videotestsrc", "rtpmp4gpay", "avenc_aac"):
        if Gst.ElementFactory.find(element) is None:
            sys.stderr.write("missing GStreamer element %s\n" % element)
            sys.exit(3)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    # One encoder for every client, like a camera.
    factory.set_shared(True)
    factory.set_protocols(
        {
            "tcp": GstRtsp.RTSPLowerTrans.TCP,
            "udp": GstRtsp.RTSPLowerTrans.UDP,
            "both": GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP,
        }[args.protocols]
    )

    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "camuser")
        auth.add_digest(args.user, args.password or "", token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("camuser", "media.factory.access", True)
        perms.add_permission_for_role("camuser", "media.factory.construct", True)
        factory.set_permissions(perms)

    if args.switch_after is not None:
        w, h = (int(x) for x in args.switch_size.split("x"))

        def on_configure(_factory, media):
            res = media.get_element().get_by_name("res")

            def switch():
                # x264enc reconfigures on new caps: a new SPS/PPS and an IDR, like a camera
                # whose resolution is changed in its web UI.
                res.set_property(
                    "caps",
                    Gst.Caps.from_string(
                        "video/x-raw,width=%d,height=%d,framerate=%d/1" % (w, h, args.fps)
                    ),
                )
                return False

            GLib.timeout_add(int(args.switch_after * 1000), switch)

        factory.connect("media-configure", on_configure)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.stderr.write("could not listen on 127.0.0.1:%d\n" % args.port)
        sys.exit(2)

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("READY %d" % server.get_bound_port(), flush=True)
    loop.run()


if __name__ == "__main__":
    main()
