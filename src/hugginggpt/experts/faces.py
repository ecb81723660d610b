"""Embedded face detector: OpenCV's Haar cascade for frontal human faces, served as a one-class object detector."""

from __future__ import annotations

from pathlib import Path

from ..errors import ExpertError
from .protocol import ExpertContext, LocalExpert, Outputs
from .weights import package_file

CASCADE = "haarcascade_frontalface_alt.xml"


def cascade_file() -> Path | None:
    """The cascade shipped in opencv-python-headless 4.x (OpenCV 5 dropped the cascade classifier), or None."""
    return package_file("cv2", "data", CASCADE)


class FaceExpert(LocalExpert):
    """object-detection of one class, `face`: frontal (not profile) human faces found by the Viola-Jones Haar
    cascade, with boxes drawn on a copy of the image. The cascade gives no confidence scores."""

    # chosen on the shared demo photos and a drawn face: the `alt` cascade on an equalised image, fine scale steps
    scale_factor = 1.05
    min_neighbors = 5

    def load(self) -> None:
        path = cascade_file()
        if path is None:
            raise ExpertError("OpenCV's face cascade is missing: pip install 'opencv-python-headless<5'")
        import cv2

        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ExpertError(f"OpenCV could not read the face cascade {path}")

    def predict(self, args: dict[str, str], ctx: ExpertContext) -> Outputs:
        import cv2
        import numpy as np
        from PIL import Image, ImageDraw, UnidentifiedImageError

        path = args.get("image")
        if not path:
            raise ExpertError("object-detection needs an 'image' file")
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ExpertError(f"{Path(path).name} is not an image that can be read: {exc}") from None
        gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY))
        side = max(24, min(gray.shape) // 40)
        found = self._cascade.detectMultiScale(gray, self.scale_factor, self.min_neighbors, minSize=(side, side))
        objects = [
            {"label": "face", "box": {"xmin": int(x), "ymin": int(y), "xmax": int(x + w), "ymax": int(y + h)}}
            for x, y, w, h in sorted((tuple(f) for f in found), key=lambda f: (f[0], f[1]))
        ]
        draw = ImageDraw.Draw(image)
        width = max(2, min(image.size) // 200)
        for number, obj in enumerate(objects, 1):
            box = obj["box"]
            draw.rectangle((box["xmin"], box["ymin"], box["xmax"], box["ymax"]), outline=(255, 40, 40), width=width)
            draw.text((box["xmin"] + width, box["ymin"] + width), f"face {number}", fill=(255, 40, 40))
        out = ctx.output_path(".png")
        image.save(out)
        count = len(objects)
        return {
            "text": f"{count} face{'s' if count != 1 else ''} found",
            "image": ctx.artifact(out, "image", "image/png"),
            "json": {"objects": objects, "counts": {"face": count}},
        }
