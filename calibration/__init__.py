"""bgm2pose.calibration"""
