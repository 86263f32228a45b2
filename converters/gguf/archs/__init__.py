"""One module per GLM architecture; importing this package registers them all."""

from . import chatglm, glm4, glm4moe, glm_dsa  # noqa: F401
