"""bgm2pose.sensing.sim"""
